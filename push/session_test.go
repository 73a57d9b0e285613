package push

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
)

func TestSessionBinderBindsToPrincipal(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	b, err := NewSessionBinder(key)
	if err != nil {
		t.Fatal(err)
	}
	const sid = 0x1122334455667788
	tag := b.Bind(sid, "apikey:0:5:alice5:alice")
	if !b.Verify(sid, "apikey:0:5:alice5:alice", tag) {
		t.Fatal("a binding does not verify for its own principal")
	}
	if b.Verify(sid, "apikey:0:7:mallory7:mallory", tag) {
		t.Fatal("alice's binding verifies for mallory")
	}
	if b.Verify(sid+1, "apikey:0:5:alice5:alice", tag) {
		t.Fatal("a binding verifies for another session id")
	}
	other, _ := NewSessionBinder(bytes.Repeat([]byte{8}, 32))
	if other.Verify(sid, "apikey:0:5:alice5:alice", tag) {
		t.Fatal("a binding verifies under another key")
	}
	// Rotation: the new key binds, the old one still verifies.
	rotated, err := NewSessionBinder(bytes.Repeat([]byte{9}, 32), key)
	if err != nil {
		t.Fatal(err)
	}
	if !rotated.Verify(sid, "apikey:0:5:alice5:alice", tag) {
		t.Fatal("a binding made with the old key fails after rotation")
	}
	if rotated.Bind(sid, "apikey:0:5:alice5:alice") == tag {
		t.Fatal("the rotated binder still binds with the old key")
	}
}

func TestSessionBinderRejectsShortKeys(t *testing.T) {
	if _, err := NewSessionBinder(make([]byte, MinSessionKeyLen-1)); err == nil {
		t.Fatal("a 15-byte key was accepted")
	}
	if _, err := NewSessionBinder(); err == nil {
		t.Fatal("no key was accepted")
	}
}

func TestDeriveSessionKeyIsStableAndDistinct(t *testing.T) {
	a1, err := DeriveSessionKey([]byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := DeriveSessionKey([]byte("0123456789abcdef"))
	b, _ := DeriveSessionKey([]byte("0123456789abcdeg"))
	if !bytes.Equal(a1, a2) || bytes.Equal(a1, b) || bytes.Equal(a1, []byte("0123456789abcdef")) {
		t.Fatalf("derived keys: %x %x %x", a1, a2, b)
	}
}

// Binding and verifying allocate nothing (a keyed HMAC per key is reused),
// and the binding is still the first four bytes of HMAC-SHA256(key, label
// || session || principal): cursors bound before keep verifying (ADR 0014).
func TestSessionBinderReusesItsMACs(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	old := []byte("fedcba9876543210fedcba9876543210")
	b, err := NewSessionBinder(key, old)
	if err != nil {
		t.Fatal(err)
	}
	ref := func(k []byte, session uint64, principal string) uint32 {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(sessionLabel))
		m.Write(binary.BigEndian.AppendUint64(nil, session))
		m.Write([]byte(principal))
		return binary.BigEndian.Uint32(m.Sum(nil))
	}
	for i, p := range []string{"", "alice", strings.Repeat("p", 300)} {
		s := uint64(i)*0x9e3779b97f4a7c15 + 1
		if got, want := b.Bind(s, p), ref(key, s, p); got != want {
			t.Errorf("Bind(%x, %q) = %08x, want HMAC %08x", s, p, got, want)
		}
		if !b.Verify(s, p, ref(old, s, p)) || b.Verify(s, p+"x", ref(old, s, p)) {
			t.Errorf("Verify(%x, %q) with the older key's binding: wrong answer", s, p)
		}
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() { b.Verify(7, "alice", b.Bind(7, "alice")) }); n != 0 {
		t.Errorf("Bind + Verify: %.0f allocations, want 0", n)
	}
}
