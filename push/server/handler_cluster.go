package server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/push"
)

// trustedKey marks requests that arrived on the admin listener, which is
// not public: they skip authentication.
const trustedKey = "herald.trusted"

// AdminHandler serves the cluster admin API (members, sessions, presence)
// and /readyz without authentication, for the admin listener only.
func (s *Server) AdminHandler() http.Handler {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(s.recover, func(c *gin.Context) { c.Set(trustedKey, true) })
	e.NoRoute(func(c *gin.Context) { s.writeError(c, errf(http.StatusNotFound, CodeNotFound, "no such endpoint")) })
	e.NoMethod(func(c *gin.Context) {
		s.writeError(c, errf(http.StatusMethodNotAllowed, CodeMethod, "method not allowed"))
	})
	e.GET("/readyz", s.handleReady)
	v1 := e.Group("/v1")
	v1.GET("/node", s.handleNode)
	v1.GET("/cluster/members", s.handleMembers)
	v1.GET("/sessions/:id", s.handleSession)
	v1.DELETE("/sessions/:id", s.handleDisconnect)
	v1.GET("/topics/:topic/presence", s.handlePresence)
	v1.GET("/region", s.handleRegion)
	v1.POST("/region/evacuate", s.handleEvacuate)
	return e
}

// requireAdmin lets through principals with the admin grant (and requests
// on the admin listener).
func (s *Server) requireAdmin(c *gin.Context) {
	if c.GetBool(trustedKey) {
		return
	}
	p, err := s.principal(c.Request, false)
	if err != nil {
		s.writeError(c, err)
		c.Abort()
		return
	}
	if !p.Admin {
		s.writeError(c, errf(http.StatusForbidden, CodeForbidden, "the cluster admin API needs an admin credential"))
		c.Abort()
	}
}

type membersResponse struct {
	Self    string   `json:"self"`
	Members []Member `json:"members"`
}

func (s *Server) handleMembers(c *gin.Context) {
	if s.cfg.Cluster == nil {
		self := Member{Name: s.cfg.Node, Region: s.cfg.Region, State: "alive", Streams: int(s.streams.Load()), Target: s.cfg.Target}
		if s.draining.Load() {
			self.State = "draining"
		}
		c.JSON(http.StatusOK, membersResponse{Self: self.Name, Members: []Member{self}})
		return
	}
	c.JSON(http.StatusOK, membersResponse{Self: s.cfg.Cluster.Local().Name, Members: s.cfg.Cluster.Members()})
}

func (s *Server) sessionParam(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if _, err := ParseSessionID(id); err != nil {
		s.writeError(c, errf(http.StatusBadRequest, CodeInvalidQuery, "session id must be 16 hex digits"))
		return "", false
	}
	return id, true
}

func (s *Server) lookup(ctx context.Context, id string) (SessionRecord, bool) {
	if s.cfg.Cluster != nil {
		ctx, cancel := context.WithTimeout(ctx, clusterQueryTimeout)
		defer cancel()
		return s.cfg.Cluster.Find(ctx, id)
	}
	for _, ls := range s.table.snapshot() {
		if ls.session == id {
			return s.localRecord(ls), true
		}
	}
	return SessionRecord{}, false
}

func (s *Server) localRecord(ls *localStream) SessionRecord {
	return SessionRecord{Session: ls.session, Node: s.cfg.Node, Region: s.cfg.Region,
		Incarnation: ls.incarnation, Topics: ls.topics, Since: ls.since}
}

func (s *Server) handleSession(c *gin.Context) {
	id, ok := s.sessionParam(c)
	if !ok {
		return
	}
	rec, ok := s.lookup(c.Request.Context(), id)
	if !ok {
		s.writeError(c, errf(http.StatusNotFound, CodeNotFound, "no such session"))
		return
	}
	c.JSON(http.StatusOK, rec)
}

func (s *Server) handleDisconnect(c *gin.Context) {
	id, ok := s.sessionParam(c)
	if !ok {
		return
	}
	var rec SessionRecord
	if s.cfg.Cluster == nil {
		r, ok := s.lookup(c.Request.Context(), id)
		if !ok || !s.table.revoke(id, r.Incarnation, EndAdmin) {
			s.writeError(c, errf(http.StatusNotFound, CodeNotFound, "no such session"))
			return
		}
		rec = r
	} else {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
		r, err := s.cfg.Cluster.Disconnect(ctx, id)
		cancel()
		switch {
		case errors.Is(err, ErrUnknownSession):
			s.writeError(c, errf(http.StatusNotFound, CodeNotFound, "no such session"))
			return
		case err != nil:
			s.log.Warn("admin disconnect failed", "session", id, "err", err)
			s.writeError(c, &apiError{Status: http.StatusBadGateway, Code: CodeOwnerUnreachable,
				Message: "the session's owner could not be reached; retry", RetryAfter: 1})
			return
		}
		rec = r
	}
	c.JSON(http.StatusAccepted, gin.H{"session": rec.Session, "node": rec.Node, "status": "disconnecting"})
}

type presenceResponse struct {
	Topic string `json:"topic"`
	Count int    `json:"count"`
	// Consistency is always "eventual": records travel by gossip.
	Consistency string          `json:"consistency"`
	Sessions    []SessionRecord `json:"sessions"`
}

// clusterQueryTimeout bounds the peers' answers to a session look-up or a
// presence query (ADR 0022); members that have not answered are left out.
const clusterQueryTimeout = 2 * time.Second

// maxPresence caps the sessions listed by the presence endpoint.
const maxPresence = 1000

func (s *Server) handlePresence(c *gin.Context) {
	topic := c.Param("topic")
	if err := push.ValidateTopic(topic); err != nil {
		s.writeError(c, err)
		return
	}
	// visible is the topics a caller may see in other sessions' records:
	// those it may subscribe to (admins and the admin listener see all).
	visible := func(string) bool { return true }
	if !c.GetBool(trustedKey) {
		p, err := s.principal(c.Request, false)
		if err != nil {
			s.writeError(c, err)
			return
		}
		if !p.CanSubscribe(topic) && !p.Admin {
			s.writeError(c, errf(http.StatusForbidden, CodeForbidden, "not allowed to see presence of "+strconv.Quote(topic)))
			return
		}
		if !p.Admin {
			visible = p.CanSubscribe
		}
	}
	var recs []SessionRecord
	if s.cfg.Cluster != nil {
		ctx, cancel := context.WithTimeout(c.Request.Context(), clusterQueryTimeout)
		recs = presenceOf(s.cfg.Cluster.Presence(ctx, topic))
		cancel()
	} else {
		for _, ls := range s.table.snapshot() {
			if slices.Contains(ls.topics, topic) {
				recs = append(recs, s.localRecord(ls))
			}
		}
		recs = presenceOf(recs)
	}
	n := len(recs)
	recs = recs[:min(n, maxPresence)]
	if recs == nil {
		recs = []SessionRecord{}
	}
	for i := range recs {
		// A copy: the records' topic slices belong to the ownership view.
		recs[i].Topics = slices.DeleteFunc(slices.Clone(recs[i].Topics), func(t string) bool { return !visible(t) })
	}
	c.JSON(http.StatusOK, presenceResponse{Topic: topic, Count: n, Consistency: "eventual", Sessions: recs})
}

// FormatSessionID renders a session id as 16 lower-case hex digits.
func FormatSessionID(id uint64) string {
	const hex = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// ParseSessionID parses FormatSessionID's output.
func ParseSessionID(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, errors.New("session id: want 16 hex digits")
	}
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || id == 0 {
		return 0, errors.New("session id: want 16 hex digits, not zero")
	}
	return id, nil
}

type nodeResponse struct {
	Name     string `json:"name"`
	Region   string `json:"region"`
	Streams  int64  `json:"streams"`
	Target   int    `json:"target"`
	Draining bool   `json:"draining"`
	Durable  bool   `json:"durable"`
	Stats    Stats  `json:"stats"`
}

// handleNode reports this node's own view (admin listener only).
func (s *Server) handleNode(c *gin.Context) {
	c.JSON(http.StatusOK, nodeResponse{
		Name: s.cfg.Node, Region: s.cfg.Region, Streams: s.streams.Load(), Target: s.cfg.Target,
		Draining: s.draining.Load(), Durable: s.store.Durable(), Stats: s.Stats(),
	})
}
