package push

import "testing"

func TestResume(t *testing.T) {
	// e3 forked from e2 at 7, e2 from e1 at 4; e3's head is 12.
	in := StreamInfo{Epoch: "e3", Last: 12, EpochStart: 8, Parent: "e2",
		Lineage: []Fork{{Epoch: "e2", At: 7}, {Epoch: "e1", At: 4}}}
	// e3 forked from e2 at 3, below e2's own fork from e1 at 5 (a
	// snapshot rolled e2 back further than e1's fork).
	deep := StreamInfo{Epoch: "e3", Last: 9, EpochStart: 4, Parent: "e2",
		Lineage: []Fork{{Epoch: "e2", At: 3}, {Epoch: "e1", At: 5}}}
	cases := []struct {
		name  string
		in    StreamInfo
		epoch string
		off   uint64
		want  ResumeStep
	}{
		{"current epoch", in, "e3", 10, ResumeStep{Kind: ResumeContinue, ContinueFrom: 11}},
		{"current epoch ahead is the caller's", in, "e3", 20, ResumeStep{Kind: ResumeContinue, ContinueFrom: 21}},
		{"parent below fork", in, "e2", 5, ResumeStep{Kind: ResumeContinue, ContinueFrom: 6}},
		{"parent at fork", in, "e2", 7, ResumeStep{Kind: ResumeContinue, ContinueFrom: 8}},
		{"parent past fork", in, "e2", 9, ResumeStep{Kind: ResumeRolledBack, LostFrom: 8, LostTo: 9, ContinueFrom: 8}},
		{"grandparent at its fork", in, "e1", 4, ResumeStep{Kind: ResumeContinue, ContinueFrom: 5}},
		{"grandparent past its fork", in, "e1", 6, ResumeStep{Kind: ResumeRolledBack, LostFrom: 5, LostTo: 6, ContinueFrom: 5}},
		{"deeper rollback bounds the grandparent", deep, "e1", 5, ResumeStep{Kind: ResumeRolledBack, LostFrom: 4, LostTo: 5, ContinueFrom: 4}},
		{"deeper rollback, grandparent below both", deep, "e1", 3, ResumeStep{Kind: ResumeContinue, ContinueFrom: 4}},
		{"unknown epoch", in, "zz", 3, ResumeStep{Kind: ResumeUnknown}},
		{"no epoch", in, "", 0, ResumeStep{Kind: ResumeUnknown}},
		{"stream without lineage", StreamInfo{Epoch: "e1", Last: 3}, "e0", 1, ResumeStep{Kind: ResumeUnknown}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Resume(tc.in, tc.epoch, tc.off); got != tc.want {
				t.Fatalf("Resume(%s@%d) = %+v, want %+v", tc.epoch, tc.off, got, tc.want)
			}
		})
	}
}
