package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/null"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/engine/enginetest"
	"github.com/strata-storage/strata/reactor"
)

// FuzzAPI sends scripts of requests (a line each: METHOD PATH BODY) to the
// real handler over a real engine, and checks every answer: no panic, no
// 500 for a request's own faults, every error a JSON {code, message} whose
// code matches its status, every success valid JSON; and at the end, that
// the engine's state reopens from its data directory as it was.
//
// The devices a script may create are fenced: null, malloc and uring pools
// of at most fuzzDeviceMax bytes, files only under the input's own
// directory: a fuzzer must not take the test machine's disks or memory.
func FuzzAPI(f *testing.F) {
	g := bdevtest.Reactors(f)
	for _, seed := range []string{
		"GET /v1/status\nGET /v1/pools\nGET /healthz",
		`POST /v1/pools {"name":"p","uri":"malloc:///?size=8MiB"}
POST /v1/volumes {"name":"v","pool":"p","size":"1MiB"}
POST /v1/volumes/v/resize {"size":"2MiB"}
POST /v1/shares {"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4420"],"allow_any_host":true}
POST /v1/hosts {"name":"h","nqn":"nqn.2024-01.io.example:h"}
GET /v1/shares/v
DELETE /v1/shares/v
DELETE /v1/volumes/v
DELETE /v1/pools/p`,
		`POST /v1/pools {"name":"f","uri":"uring://$DIR/f.img?size=4MiB&block_size=512"}
POST /v1/volumes {"name":"a","pool":"f","size":4096}
POST /v1/volumes {"name":"a","pool":"f","size":"8KiB"}
DELETE /v1/pools/f`,
		`POST /v1/pools {"name":"n","uri":"null:///?size=1TiB"}
POST /v1/volumes {"name":"x","pool":"n","size":"1.5GiB"}
POST /v1/volumes {"name":"x","pool":"n","size":-1}
PUT /v1/pools/n {}
POST /v1/pools/n {"name":"n"}
POST /v1/pools {"name":"n","uri":"null:///?size=1TiB"}{}`,
		"POST /v1/pools {\"name\":\"\\u0000\",\"uri\":\"malloc:///?size=99999999999999999999\"}",
		"GET /v1/volumes/..%2f..%2fetc\nDELETE /v1/hosts/%00\nGET /v1//pools",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		runAPIScript(t, g, script)
	})
}

// fuzzDeviceMax bounds the pools a fuzzed script may create.
const fuzzDeviceMax = 64 << 20

// fencedDevices are the device schemes of a fuzzed engine: sizes bounded,
// files only under dir.
func fencedDevices(dir string) map[string]bdev.Factory {
	bounded := func(f bdev.Factory, sized bool) bdev.Factory {
		return func(name string, u *url.URL) (bdev.Device, error) {
			size, _, err := bdev.QueryOptions(u)
			if err != nil {
				return nil, err
			}
			if sized && size > fuzzDeviceMax {
				return nil, fmt.Errorf("%w: the fuzz harness takes at most %d bytes", bdev.ErrBadURI, fuzzDeviceMax)
			}
			return f(name, u)
		}
	}
	fenced := func(name string, u *url.URL) (bdev.Device, error) {
		if p := filepath.Clean(u.Path); !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return nil, fmt.Errorf("%w: the fuzz harness takes files under %s only", bdev.ErrBadURI, dir)
		}
		return bounded(file.FromURI, true)(name, u)
	}
	return map[string]bdev.Factory{
		null.Scheme:   bounded(null.FromURI, false), // keeps nothing: any size
		malloc.Scheme: bounded(malloc.FromURI, true),
		file.Scheme:   fenced,
	}
}

// statusOfCode is the HTTP status each error code must come with.
var statusOfCode = map[string]int{
	api.CodeInvalid: 400, api.CodeUnauthorized: 401, api.CodeNotFound: 404, api.CodeMethodNotAllowed: 405,
	api.CodeConflict: 409, api.CodeNoSpace: 409, api.CodeTooLarge: 413, api.CodeDeviceError: 422,
	api.CodeInternal: 500, api.CodeExportFailed: 502, api.CodeTargetUnavailable: 503, api.CodeShuttingDown: 503,
	api.CodeInterrupted: 504,
}

// maxScriptLines bounds the requests of one input.
const maxScriptLines = 32

func runAPIScript(t *testing.T, g *reactor.Group, script []byte) {
	dir := t.TempDir()
	open := func() *engine.Engine {
		e, err := engine.Open(engine.Config{
			DataDir: filepath.Join(dir, "data"), Reactors: g, SampleInterval: -1,
			Devices: fencedDevices(dir), Exporter: enginetest.NewExporter(g.Get(0)),
		})
		require.NoError(t, err)
		return e
	}
	e := open()
	h := api.NewHandler(e, api.Options{Version: "fuzz"})
	lines := strings.Split(strings.ReplaceAll(string(script), "$DIR", dir), "\n")
	for i, line := range lines[:min(len(lines), maxScriptLines)] {
		method, rest, _ := strings.Cut(line, " ")
		target, body, _ := strings.Cut(rest, " ")
		if !validMethod(method) {
			continue // the HTTP server answers 400 itself, before the API
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			continue // likewise
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		req := (&http.Request{
			Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}}, Host: "strata",
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
		}).WithContext(ctx)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		cancel()
		checkAnswer(t, fmt.Sprintf("line %d: %s %s", i+1, method, target), rec)
	}
	// What the engine holds is on disk: it reopens as it was.
	before := snapshot(e)
	require.NoError(t, e.Close())
	e = open()
	defer func() { require.NoError(t, e.Close()) }()
	require.Equal(t, before, snapshot(e), "state after reopening the data directory")
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

// checkAnswer checks one answer of the API.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	status, body := rec.Code, rec.Body.Bytes()
	switch {
	case status == http.StatusNoContent:
		require.Empty(t, body, what)
		return
	case status == http.StatusOK && bytes.Equal(body, []byte("ok\n")):
		return // /healthz
	}
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"), "%s: %d %s", what, status, body)
	if status < 400 {
		require.True(t, json.Valid(body), "%s: %s", what, body)
		return
	}
	var er api.ErrorResponse
	require.NoError(t, json.Unmarshal(body, &er), "%s: %s", what, body)
	require.NotEmpty(t, er.Message, "%s: %s", what, body)
	want, ok := statusOfCode[er.Code]
	require.True(t, ok, "%s: unknown code %q", what, er.Code)
	require.Equal(t, want, status, "%s: code %s with status %d", what, er.Code, status)
	require.NotEqual(t, api.CodeInternal, er.Code, "%s: a 500 for a request's own fault: %s", what, er.Message)
	if status == http.StatusMethodNotAllowed {
		require.NotEmpty(t, rec.Header().Get("Allow"), what)
	}
}

// engineState is what must survive a reopen.
type engineState struct {
	Pools, Volumes, Shares, Hosts []string
}

func snapshot(e *engine.Engine) engineState {
	var s engineState
	for _, p := range e.Pools() {
		s.Pools = append(s.Pools, p.Name+" "+p.URI+" "+p.UUID)
	}
	for _, v := range e.Volumes() {
		s.Volumes = append(s.Volumes, fmt.Sprintf("%s %s %d %s %s", v.Name, v.Pool, v.SizeBytes, v.UUID, v.NGUID))
	}
	for _, sh := range e.Shares() {
		s.Shares = append(s.Shares, sh.Name+" "+sh.NQN)
	}
	for _, h := range e.Hosts() {
		s.Hosts = append(s.Hosts, h.Name+" "+h.NQN)
	}
	for _, l := range [][]string{s.Pools, s.Volumes, s.Shares, s.Hosts} {
		slices.Sort(l)
	}
	return s
}

// TestAPIScripts runs the seeds and seeded random scripts built from the
// API's own vocabulary on every `go test`.
func TestAPIScripts(t *testing.T) {
	g := bdevtest.Reactors(t)
	words := []string{
		"GET", "POST", "DELETE", "PUT", "PATCH", "/v1/pools", "/v1/volumes", "/v1/shares", "/v1/hosts", "/v1/status",
		"/v1/pools/p", "/v1/volumes/v", "/v1/volumes/v/resize", "/v1/shares/v", "/v1/hosts/h", "/v1/nope", "/healthz",
	}
	bodies := []string{
		`{"name":"p","uri":"malloc:///?size=8MiB"}`, `{"name":"p","uri":"null:///?size=1GiB"}`,
		`{"name":"p","uri":"uring://$DIR/p.img?size=8MiB"}`, `{"name":"v","pool":"p","size":"1MiB"}`,
		`{"name":"v","pool":"p","size":"100GiB"}`, `{"size":"2MiB"}`, `{"size":"512"}`,
		`{"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4420"],"allow_any_host":true}`,
		`{"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["[::1]:4420"],"hosts":["nqn.2024-01.io.example:h"]}`,
		`{"name":"h","nqn":"nqn.2024-01.io.example:h"}`, `{}`, `[]`, `null`, `{"name":1}`, `{"name":"p"} x`, ``,
		`{"name":"p","uri":"malloc:///?size=1MiB&block_size=3"}`, `{"name":"v","pool":"p","size":"1e3"}`,
	}
	seed := uint64(1)
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for i := range 60 {
		var b strings.Builder
		for range 1 + next(12) {
			fmt.Fprintf(&b, "%s %s %s\n", words[next(5)], words[5+next(len(words)-5)], bodies[next(len(bodies))])
		}
		script := b.String()
		if !t.Run("script", func(t *testing.T) { runAPIScript(t, g, []byte(script)) }) {
			t.Fatalf("script %d failed:\n%s", i, script)
		}
	}
}
