package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/node"
)

// trustedKey marks requests that arrived on the admin listener, which is
// not public: they skip authentication.
const trustedKey = "herald.trusted"

// AdminExtras are the admin-listener endpoints the process, not the
// Server, owns.
type AdminExtras struct {
	// Metrics serves GET /metrics (the Prometheus scrape); nil leaves it out.
	Metrics http.Handler
	// Protection serves GET /v1/protection; nil leaves it out.
	Protection http.Handler
	// Pprof serves Go's profiles under /debug/pprof/.
	Pprof bool
	// Pages are GET handlers by path; a path other than "/" that ends in
	// "/" serves everything under it.
	Pages []AdminPage
}

// AdminPage is one GET endpoint of AdminExtras.Pages.
type AdminPage struct {
	Path    string
	Handler http.Handler
}

// AdminHandler is the admin listener's one router: /healthz, /readyz, the
// cluster admin API (node, members, sessions, presence, region), and the
// extras (metrics, protection, pprof), all without authentication — for
// the admin listener only. The OpenAPI drift test walks its routes, so a
// route added here must be added to docs/openapi.yaml.
func (s *Server) AdminHandler(x AdminExtras) *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(s.recover, func(c *gin.Context) { c.Set(trustedKey, true) })
	e.NoRoute(func(c *gin.Context) { s.writeError(c, errf(http.StatusNotFound, CodeNotFound, "no such endpoint")) })
	e.NoMethod(func(c *gin.Context) {
		s.writeError(c, errf(http.StatusMethodNotAllowed, CodeMethod, "method not allowed"))
	})
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.handleReady)
	if x.Metrics != nil {
		e.GET("/metrics", gin.WrapH(x.Metrics))
	}
	v1 := e.Group("/v1")
	v1.GET("/node", s.handleNode)
	v1.GET("/cluster/members", s.handleMembers)
	v1.GET("/sessions/:id", s.handleSession)
	v1.DELETE("/sessions/:id", s.handleDisconnect)
	v1.GET("/topics/:topic/presence", s.handlePresence)
	v1.GET("/region", s.handleRegion)
	v1.POST("/region/evacuate", s.handleEvacuate)
	if x.Protection != nil {
		v1.GET("/protection", gin.WrapH(x.Protection))
	}
	for _, p := range x.Pages {
		if p.Path != "/" && strings.HasSuffix(p.Path, "/") {
			e.GET(p.Path+"*path", gin.WrapH(p.Handler))
		} else {
			e.GET(p.Path, gin.WrapH(p.Handler))
		}
	}
	if x.Pprof {
		pp := e.Group("/debug/pprof")
		pp.GET("/", gin.WrapF(pprof.Index))
		pp.GET("/:profile", gin.WrapF(pprof.Index)) // heap, goroutine, allocs…: Index serves them by name
		pp.GET("/cmdline", gin.WrapF(pprof.Cmdline))
		pp.GET("/profile", gin.WrapF(pprof.Profile))
		pp.GET("/symbol", gin.WrapF(pprof.Symbol))
		pp.POST("/symbol", gin.WrapF(pprof.Symbol))
		pp.GET("/trace", gin.WrapF(pprof.Trace))
	}
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
	Self    string        `json:"self"`
	Members []node.Member `json:"members"`
}

func (s *Server) handleMembers(c *gin.Context) {
	self, members := s.node.Members()
	c.JSON(http.StatusOK, membersResponse{Self: self, Members: members})
}

func (s *Server) sessionParam(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if _, err := node.ParseSessionID(id); err != nil {
		s.writeError(c, errf(http.StatusBadRequest, CodeInvalidQuery, "session id must be 16 hex digits"))
		return "", false
	}
	return id, true
}

func (s *Server) handleSession(c *gin.Context) {
	id, ok := s.sessionParam(c)
	if !ok {
		return
	}
	rec, ok := s.node.Lookup(c.Request.Context(), id)
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
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	rec, err := s.node.Disconnect(ctx, id)
	cancel()
	switch {
	case errors.Is(err, node.ErrUnknownSession):
		s.writeError(c, errf(http.StatusNotFound, CodeNotFound, "no such session"))
		return
	case err != nil:
		s.log.Warn("admin disconnect failed", "session", id, "err", err)
		s.writeError(c, &apiError{Status: http.StatusBadGateway, Code: CodeOwnerUnreachable,
			Message: "the session's owner could not be reached; retry", RetryAfter: 1})
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"session": rec.Session, "node": rec.Node, "status": "disconnecting"})
}

type presenceResponse struct {
	Topic string `json:"topic"`
	Count int    `json:"count"`
	// Consistency is always "eventual": records travel by gossip.
	Consistency string               `json:"consistency"`
	Sessions    []node.SessionRecord `json:"sessions"`
}

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
	recs := s.node.Presence(c.Request.Context(), topic)
	n := len(recs)
	recs = recs[:min(n, maxPresence)]
	if recs == nil {
		recs = []node.SessionRecord{}
	}
	for i := range recs {
		// A copy: the records' topic slices belong to the ownership view.
		recs[i].Topics = slices.DeleteFunc(slices.Clone(recs[i].Topics), func(t string) bool { return !visible(t) })
	}
	c.JSON(http.StatusOK, presenceResponse{Topic: topic, Count: n, Consistency: "eventual", Sessions: recs})
}

type nodeResponse struct {
	Name     string     `json:"name"`
	Region   string     `json:"region"`
	Streams  int64      `json:"streams"`
	Target   int        `json:"target"`
	Draining bool       `json:"draining"`
	Durable  bool       `json:"durable"`
	Stats    node.Stats `json:"stats"`
}

// handleNode reports this node's own view (admin listener only).
func (s *Server) handleNode(c *gin.Context) {
	c.JSON(http.StatusOK, nodeResponse{
		Name: s.node.Name(), Region: s.node.Region(), Streams: s.node.Streams(), Target: s.cfg.Node.ConnectionTarget,
		Draining: s.node.Draining(), Durable: s.store.Durable(), Stats: s.Stats(),
	})
}
