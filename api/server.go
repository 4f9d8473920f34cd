// Package api is Strata's control API: HTTP/JSON under /v1, served by the
// daemon on a Unix socket (and, with a bearer token, on TCP), and a client
// for it.
//
// Resources: /v1/pools, /v1/volumes (+ /{name}/resize), /v1/shares,
// /v1/hosts, each with GET (list), POST (create), GET and DELETE on
// /{name}; GET /v1/status. Creating is idempotent by name: the same spec
// again answers 200 with the existing object (201 when it was made), a
// different one 409. Errors answer {"code": "...", "message": "..."} with
// the status matching the code (see codeOf). Request bodies are JSON, at
// most MaxBodyBytes, with no unknown fields.
//
// /metrics (when configured) and /healthz sit beside /v1.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/strata-storage/strata/engine"
)

// MaxBodyBytes bounds a request body: far above any valid request.
const MaxBodyBytes = 64 << 10

// Error codes of ErrorResponse.Code.
const (
	CodeInvalid           = "invalid"            // 400
	CodeUnauthorized      = "unauthorized"       // 401
	CodeNotFound          = "not_found"          // 404
	CodeMethodNotAllowed  = "method_not_allowed" // 405
	CodeConflict          = "conflict"           // 409
	CodeNoSpace           = "no_space"           // 409
	CodeTooLarge          = "too_large"          // 413
	CodeDeviceError       = "device_error"       // 422
	CodeInternal          = "internal"           // 500
	CodeExportFailed      = "export_failed"      // 502
	CodeTargetUnavailable = "target_unavailable" // 503
	CodeShuttingDown      = "shutting_down"      // 503
	// CodeInterrupted: the request stopped waiting for device work (its
	// context ended: the client went away, the server shuts down); the
	// message says whether the operation goes on in the background.
	CodeInterrupted = "interrupted" // 504
)

// codeOf maps an engine error to its code and HTTP status.
func codeOf(err error) (string, int) {
	for _, m := range []struct {
		kind   error
		code   string
		status int
	}{
		{engine.ErrInvalid, CodeInvalid, http.StatusBadRequest},
		{engine.ErrNotFound, CodeNotFound, http.StatusNotFound},
		{engine.ErrNoSpace, CodeNoSpace, http.StatusConflict},
		{engine.ErrConflict, CodeConflict, http.StatusConflict},
		{engine.ErrDevice, CodeDeviceError, http.StatusUnprocessableEntity},
		{engine.ErrExport, CodeExportFailed, http.StatusBadGateway},
		{engine.ErrTargetUnavailable, CodeTargetUnavailable, http.StatusServiceUnavailable},
		{engine.ErrClosed, CodeShuttingDown, http.StatusServiceUnavailable},
		{engine.ErrInterrupted, CodeInterrupted, http.StatusGatewayTimeout},
	} {
		if errors.Is(err, m.kind) {
			return m.code, m.status
		}
	}
	return CodeInternal, http.StatusInternalServerError
}

// Options configures NewHandler.
type Options struct {
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Version is reported by /v1/status.
	Version string
	// OnError, when set, is called with the code of every error answer
	// (to count them).
	OnError func(code string)
	Logger  *slog.Logger
}

type server struct {
	e       *engine.Engine
	o       Options
	log     *slog.Logger
	started time.Time
	mux     *http.ServeMux
}

// NewHandler returns the API's handler over e.
func NewHandler(e *engine.Engine, o Options) http.Handler {
	s := &server{e: e, o: o, log: o.Logger, started: time.Now(), mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	m := s.mux
	m.HandleFunc("GET /v1/pools", s.listPools)
	m.HandleFunc("POST /v1/pools", s.createPool)
	m.HandleFunc("GET /v1/pools/{name}", s.getPool)
	m.HandleFunc("DELETE /v1/pools/{name}", s.deletePool)
	m.HandleFunc("GET /v1/pools/{name}/check", s.checkPool)
	m.HandleFunc("GET /v1/volumes", s.listVolumes)
	m.HandleFunc("POST /v1/volumes", s.createVolume)
	m.HandleFunc("GET /v1/volumes/{name}", s.getVolume)
	m.HandleFunc("DELETE /v1/volumes/{name}", s.deleteVolume)
	m.HandleFunc("POST /v1/volumes/{name}/resize", s.resizeVolume)
	m.HandleFunc("GET /v1/snapshots", s.listSnapshots)
	m.HandleFunc("POST /v1/snapshots", s.createSnapshot)
	m.HandleFunc("GET /v1/snapshots/{name}", s.getSnapshot)
	m.HandleFunc("DELETE /v1/snapshots/{name}", s.deleteSnapshot)
	m.HandleFunc("GET /v1/shares", s.listShares)
	m.HandleFunc("POST /v1/shares", s.createShare)
	m.HandleFunc("GET /v1/shares/{name}", s.getShare)
	m.HandleFunc("DELETE /v1/shares/{name}", s.deleteShare)
	m.HandleFunc("GET /v1/hosts", s.listHosts)
	m.HandleFunc("POST /v1/hosts", s.createHost)
	m.HandleFunc("GET /v1/hosts/{name}", s.getHost)
	m.HandleFunc("DELETE /v1/hosts/{name}", s.deleteHost)
	m.HandleFunc("GET /v1/status", s.status)
	m.HandleFunc("GET /healthz", Healthz)
	if o.Metrics != nil {
		m.Handle("GET /metrics", o.Metrics)
	}
	return s
}

// methods are those the API routes; an unrouted request for a path one of
// them serves is "method not allowed", otherwise "not found".
var methods = []string{http.MethodGet, http.MethodPost, http.MethodDelete}

// ServeHTTP routes r, answering unknown paths and methods in JSON (the
// mux's own answers are plain text).
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The mux redirects paths such as /v1//pools to their clean form with
	// an HTML page: an API client wants to hear that the path is wrong.
	if clean := path.Clean(r.URL.Path); clean != r.URL.Path && r.URL.Path != "" {
		s.fail(w, r, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no such API path %s (clean: %s)", r.URL.Path, clean))
		return
	}
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range methods {
		probe := r.Clone(context.Background())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.fail(w, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed, fmt.Sprintf("%s %s: allowed methods are %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	s.fail(w, r, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no such API path %s", r.URL.Path))
}

// Healthz answers liveness probes.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a failed write is the client's disconnect
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if s.o.OnError != nil {
		s.o.OnError(code)
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "code", code, "err", msg)
	writeJSON(w, status, ErrorResponse{Code: code, Message: msg})
}

func (s *server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	code, status := codeOf(err)
	s.fail(w, r, status, code, err.Error())
}

// decode reads r's JSON body into v: bounded, no unknown fields, nothing
// after the object. It answers the error itself and reports false.
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooLarge):
		s.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
	case errors.Is(err, io.EOF):
		s.fail(w, r, http.StatusBadRequest, CodeInvalid, "request body: empty, want a JSON object")
	default:
		s.fail(w, r, http.StatusBadRequest, CodeInvalid, "request body: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	return false
}

// created answers a create: 201 when made now, 200 when it existed.
func created(w http.ResponseWriter, v any, made bool) {
	if made {
		writeJSON(w, http.StatusCreated, v)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// answer writes v, or the error.
func answer[T any](s *server, w http.ResponseWriter, r *http.Request, v T, err error) {
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) deleted(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listPools(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, PoolList{Pools: s.e.Pools()})
}

func (s *server) getPool(w http.ResponseWriter, r *http.Request) {
	p, err := s.e.Pool(r.PathValue("name"))
	answer(s, w, r, p, err)
}

func (s *server) createPool(w http.ResponseWriter, r *http.Request) {
	var req PoolRequest
	if !s.decode(w, r, &req) {
		return
	}
	p, made, err := s.e.CreatePool(r.Context(), engine.PoolSpec{
		Name: req.Name, URI: req.URI, Format: req.Format, ClusterSize: uint64(req.ClusterSize), Import: req.Import,
	})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	created(w, p, made)
}

func (s *server) deletePool(w http.ResponseWriter, r *http.Request) {
	s.deleted(w, r, s.e.DeletePool(r.Context(), r.PathValue("name")))
}

func (s *server) checkPool(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	faults, err := s.e.CheckPool(name)
	answer(s, w, r, CheckResponse{Pool: name, Faults: faults}, err)
}

func (s *server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	snaps, err := s.e.Snapshots(r.URL.Query().Get("volume"))
	answer(s, w, r, SnapshotList{Snapshots: snaps}, err)
}

func (s *server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	sn, err := s.e.GetSnapshot(r.PathValue("name"))
	answer(s, w, r, sn, err)
}

func (s *server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req SnapshotRequest
	if !s.decode(w, r, &req) {
		return
	}
	sn, made, err := s.e.CreateSnapshot(r.Context(), engine.SnapshotSpec(req))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	created(w, sn, made)
}

func (s *server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	s.deleted(w, r, s.e.DeleteSnapshot(r.Context(), r.PathValue("name")))
}

func (s *server) listVolumes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, VolumeList{Volumes: s.e.Volumes()})
}

func (s *server) getVolume(w http.ResponseWriter, r *http.Request) {
	v, err := s.e.Volume(r.PathValue("name"))
	answer(s, w, r, v, err)
}

func (s *server) createVolume(w http.ResponseWriter, r *http.Request) {
	var req VolumeRequest
	if !s.decode(w, r, &req) {
		return
	}
	v, made, err := s.e.CreateVolume(r.Context(), engine.VolumeSpec{
		Name: req.Name, Pool: req.Pool, SizeBytes: uint64(req.Size), Thin: req.Thin, Snapshot: req.Snapshot,
	})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	created(w, v, made)
}

func (s *server) resizeVolume(w http.ResponseWriter, r *http.Request) {
	var req ResizeRequest
	if !s.decode(w, r, &req) {
		return
	}
	v, err := s.e.ResizeVolume(r.Context(), r.PathValue("name"), uint64(req.Size))
	answer(s, w, r, v, err)
}

func (s *server) deleteVolume(w http.ResponseWriter, r *http.Request) {
	s.deleted(w, r, s.e.DeleteVolume(r.Context(), r.PathValue("name")))
}

func (s *server) listShares(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, ShareList{Shares: s.e.Shares()})
}

func (s *server) getShare(w http.ResponseWriter, r *http.Request) {
	sh, err := s.e.Share(r.PathValue("name"))
	answer(s, w, r, sh, err)
}

func (s *server) createShare(w http.ResponseWriter, r *http.Request) {
	var req ShareRequest
	if !s.decode(w, r, &req) {
		return
	}
	sh, made, err := s.e.CreateShare(r.Context(), engine.ShareSpec(req))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	created(w, sh, made)
}

func (s *server) deleteShare(w http.ResponseWriter, r *http.Request) {
	s.deleted(w, r, s.e.DeleteShare(r.Context(), r.PathValue("name")))
}

func (s *server) listHosts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, HostList{Hosts: s.e.Hosts()})
}

func (s *server) getHost(w http.ResponseWriter, r *http.Request) {
	h, err := s.e.Host(r.PathValue("name"))
	answer(s, w, r, h, err)
}

func (s *server) createHost(w http.ResponseWriter, r *http.Request) {
	var req HostRequest
	if !s.decode(w, r, &req) {
		return
	}
	h, made, err := s.e.CreateHost(r.Context(), engine.HostSpec(req))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	created(w, h, made)
}

func (s *server) deleteHost(w http.ResponseWriter, r *http.Request) {
	s.deleted(w, r, s.e.DeleteHost(r.Context(), r.PathValue("name")))
}

func (s *server) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, StatusResponse{
		Version: s.o.Version, UptimeSeconds: time.Since(s.started).Seconds(), Status: s.e.Status(),
	})
}

// RequireToken wraps h so that every request but /healthz must carry
// "Authorization: Bearer token": for API listeners that the file
// permissions of a Unix socket do not protect.
func RequireToken(h http.Handler, token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="strata"`)
			writeJSON(w, http.StatusUnauthorized, ErrorResponse{Code: CodeUnauthorized, Message: "missing or wrong bearer token"})
			return
		}
		h.ServeHTTP(w, r)
	})
}
