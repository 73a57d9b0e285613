package push

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// SessionBinder binds session ids to the principal that created them
// (ADR 0014). A cursor carries its session id and a 32-bit binding: the
// first four bytes of HMAC-SHA256(key, label || session || principal). Any
// node holding the key checks, where the claim is made, that a resuming
// cursor's session was issued to the principal presenting it; a copied
// session id presented by another principal does not verify, and the
// stream starts a fresh session instead of taking the other one over.
//
// Keys are shared by every node that may see a session's reconnect (a
// region's nodes derive them from the gossip key; operators who want
// sessions to follow clients across regions set one session key
// everywhere). The first key binds new sessions; every key verifies, so a
// key can be rotated without breaking live sessions.
//
// A SessionBinder is immutable and safe for concurrent use.
type SessionBinder struct {
	keys []*sessionKey
}

// sessionKey is one binder key with its keyed MACs: building an HMAC hashes
// the key and allocates, which every connect would pay (issue 20 item 4),
// while resetting a used one restores its keyed state.
type sessionKey struct {
	key  []byte
	macs sync.Pool // of *sessionMAC, keyed with key
}

// sessionMAC is a keyed HMAC-SHA256 with the buffers one binding needs.
type sessionMAC struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

func newSessionKey(k []byte) *sessionKey {
	sk := &sessionKey{key: k}
	sk.macs.New = func() any { return &sessionMAC{h: hmac.New(sha256.New, sk.key)} }
	return sk
}

// mac is the first four bytes of HMAC-SHA256(key, label || session ||
// principal).
func (k *sessionKey) mac(session uint64, principal string) uint32 {
	m := k.macs.Get().(*sessionMAC)
	m.h.Reset()
	m.in = append(m.in[:0], sessionLabel...)
	m.in = binary.BigEndian.AppendUint64(m.in, session)
	m.in = append(m.in, principal...)
	m.h.Write(m.in)
	tag := binary.BigEndian.Uint32(m.h.Sum(m.sum[:0]))
	if cap(m.in) <= 1<<10 { // a huge principal's buffer is not kept
		k.macs.Put(m)
	}
	return tag
}

// sessionLabel separates this MAC's inputs from any other use of the key.
const sessionLabel = "herald session binding v1\x00"

// MinSessionKeyLen is the shortest key NewSessionBinder accepts.
const MinSessionKeyLen = 16

// NewSessionBinder returns a binder that binds with keys[0] and verifies
// with every key. Each key must be at least MinSessionKeyLen bytes.
func NewSessionBinder(keys ...[]byte) (*SessionBinder, error) {
	if len(keys) == 0 {
		return nil, errors.New("session binder: no key")
	}
	b := &SessionBinder{keys: make([]*sessionKey, len(keys))}
	for i, k := range keys {
		if len(k) < MinSessionKeyLen {
			return nil, fmt.Errorf("session binder: key %d is %d bytes, want at least %d", i, len(k), MinSessionKeyLen)
		}
		b.keys[i] = newSessionKey(append([]byte(nil), k...))
	}
	return b, nil
}

// RandomSessionBinder returns a binder with a fresh random key: sessions
// it binds are recognised by this process only (a single node; a restart
// starts every resuming client on a new session, with its positions kept).
func RandomSessionBinder() *SessionBinder {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (Go 1.24+)
	return &SessionBinder{keys: []*sessionKey{newSessionKey(k)}}
}

// DeriveSessionKey derives a session key from other key material (a gossip
// key) so that the session MAC never uses that key directly.
func DeriveSessionKey(secret []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, nil, "herald session binding", 32)
}

// Bind returns the binding of session to principal (an identity string
// such as auth.Principal.ID) under the current key.
func (b *SessionBinder) Bind(session uint64, principal string) uint32 {
	return b.keys[0].mac(session, principal)
}

// Verify reports whether tag binds session to principal under any key.
func (b *SessionBinder) Verify(session uint64, principal string, tag uint32) bool {
	var want, got [4]byte
	binary.BigEndian.PutUint32(got[:], tag)
	ok := false
	for _, k := range b.keys {
		binary.BigEndian.PutUint32(want[:], k.mac(session, principal))
		ok = hmac.Equal(want[:], got[:]) || ok
	}
	return ok
}
