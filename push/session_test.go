package push

import (
	"bytes"
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
