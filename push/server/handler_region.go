package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/push/node"
)

type evacuateRequest struct {
	Active *bool  `json:"active"`
	By     string `json:"by"`
}

// handleEvacuate records a region-wide evacuation order (or calls one off)
// in the region's store; every node of the region applies it within a
// region interval.
func (s *Server) handleEvacuate(c *gin.Context) {
	var req evacuateRequest
	if err := s.decodeJSON(c, 4096, &req); err != nil {
		s.writeError(c, err)
		return
	}
	if req.Active == nil {
		s.writeError(c, errf(http.StatusBadRequest, CodeInvalidJSON, `give {"active": true} to evacuate or {"active": false} to call it off`))
		return
	}
	o, err := s.node.Evacuate(c.Request.Context(), *req.Active, req.By)
	if errors.Is(err, node.ErrNoRegionSignals) {
		s.writeError(c, errf(http.StatusNotImplemented, CodeUnavailable, err.Error()))
		return
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"region": s.node.Region(), "evacuation": o})
}

// handleRegion describes this region: the evacuation order in force, every
// origin's lag and the federation's view of the other regions.
func (s *Server) handleRegion(c *gin.Context) {
	n := s.node
	body := gin.H{"region": n.Region(), "evacuating": n.Evacuating(), "evacuation": n.Evacuation(), "origins": n.Origins()}
	if f := n.Federation(); f != nil {
		body["regions"] = f.Regions()
		body["alternates"] = f.Alternates()
	}
	c.JSON(http.StatusOK, body)
}
