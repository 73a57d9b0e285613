package push

// maxLineageCombinations bounds the assignments ResolveLineages tries.
// Each slot's candidates are first filtered by the cursor's 8-bit tag, so
// real cursors try one or two.
const maxLineageCombinations = 1 << 12

// ResolveLineages finds which epoch the client read each slot in, among
// candidates[i]: the epochs of slot i's stream lineage (the current epoch
// first, then its ancestors newest first; nil or empty for a stream never
// written). It returns, per slot, the index into candidates[i] (-1 for
// slots the client has not read), or ok false when no assignment makes
// the cursor's 32-bit check hold with every read slot's 8-bit tag
// matching, or when too many assignments are possible to try. A wrong
// assignment that holds would need a 32-bit collision.
//
// Assignments that keep slots in their current epoch are tried first, so
// a cursor whose check holds against the current epochs resolves to all
// zeros.
func (p *ParsedCursor) ResolveLineages(candidates [][]string) (choice []int, ok bool) {
	n := len(p.c.pos)
	read := func(i int) bool { return p.c.pos[i].Offset > 0 && p.Present(i) }
	opts := make([][]int, n)
	total := 1
	for i := range n {
		if !read(i) {
			continue
		}
		var c []string
		if i < len(candidates) {
			c = candidates[i]
		}
		for j, e := range c {
			if e != "" && epochTag(e) == p.epochTags[i] {
				opts[i] = append(opts[i], j)
			}
		}
		if len(opts[i]) == 0 {
			return nil, false
		}
		total *= len(opts[i])
		if total > maxLineageCombinations {
			return nil, false
		}
	}
	choice = make([]int, n)
	var try func(i int) bool
	try = func(i int) bool {
		if i == n {
			return epochCheck(p.c.topics, p.c.origins, func(k int) (string, bool) {
				if !read(k) {
					return "", false
				}
				return candidates[k][choice[k]], true
			}) == p.check
		}
		if !read(i) {
			choice[i] = -1
			return try(i + 1)
		}
		for _, j := range opts[i] {
			choice[i] = j
			if try(i + 1) {
				return true
			}
		}
		return false
	}
	if !try(0) {
		return nil, false
	}
	return choice, true
}
