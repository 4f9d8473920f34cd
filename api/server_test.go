package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/engine/enginetest"
)

type harness struct {
	srv    *httptest.Server
	dir    string
	x      *enginetest.Exporter
	e      *engine.Engine
	errors map[string]int
}

// newHarness serves the real handler over a real engine with the fake
// target (or none).
func newHarness(t *testing.T, withTarget bool) *harness {
	g := bdevtest.Reactors(t)
	h := &harness{dir: t.TempDir(), x: enginetest.NewExporter(g.Get(0)), errors: map[string]int{}}
	cfg := engine.Config{DataDir: h.dir, Reactors: g, SampleInterval: -1}
	if withTarget {
		cfg.Exporter = h.x
	}
	e, err := engine.Open(cfg)
	require.NoError(t, err)
	h.e = e
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics here\n") })
	h.srv = httptest.NewServer(api.NewHandler(e, api.Options{Metrics: metrics, Version: "test", OnError: func(code string) { h.errors[code]++ }}))
	t.Cleanup(h.srv.Close)
	return h
}

// call sends body (raw JSON, or none when empty) and returns the status
// and the decoded answer.
func (h *harness) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	require.NoError(t, err)
	resp, err := h.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusNoContent {
		require.Empty(t, data)
		return resp.StatusCode, nil
	}
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s %s: %s", method, path, data)
	var out map[string]any
	require.NoError(t, json.Unmarshal(data, &out), "%s", data)
	return resp.StatusCode, out
}

// expect checks one call's status and, for errors, code and message.
func (h *harness) expect(t *testing.T, method, path, body string, status int, codeAndMsg ...string) map[string]any {
	t.Helper()
	got, out := h.call(t, method, path, body)
	require.Equal(t, status, got, "%s %s %s: %v", method, path, body, out)
	if len(codeAndMsg) > 0 {
		require.Equal(t, codeAndMsg[0], out["code"], "%v", out)
		if len(codeAndMsg) > 1 {
			require.Contains(t, out["message"], codeAndMsg[1])
		}
	}
	return out
}

func TestPoolsEndpoints(t *testing.T) {
	h := newHarness(t, true)
	img := "uring://" + filepath.Join(h.dir, "p.img") + "?size=16MiB"
	out := h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"`+img+`"}`, 201)
	require.Equal(t, "p", out["name"])
	require.Equal(t, "online", out["state"])
	require.EqualValues(t, 16<<20, out["capacity_bytes"])
	require.EqualValues(t, 16<<20, out["free_bytes"])
	again := h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"`+img+`"}`, 200)
	require.Equal(t, out, again, "idempotent create answers the existing pool")
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"malloc:///?size=1MiB"}`, 409, "conflict", "exists with URI")
	h.expect(t, "POST", "/v1/pools", `{"name":"m","uri":"malloc:///?size=8MiB"}`, 201)

	list := h.expect(t, "GET", "/v1/pools", "", 200)
	require.Len(t, list["pools"], 2)
	require.Equal(t, "m", list["pools"].([]any)[0].(map[string]any)["name"])
	got := h.expect(t, "GET", "/v1/pools/p", "", 200)
	require.Equal(t, out, got)
	h.expect(t, "GET", "/v1/pools/nope", "", 404, "not_found", `pool "nope" not found`)

	// Validation.
	h.expect(t, "POST", "/v1/pools", `{"name":"bad name","uri":"null:///"}`, 400, "invalid", "invalid name")
	h.expect(t, "POST", "/v1/pools", `{"name":"x","uri":"tape:///dev/st0"}`, 400, "invalid", "unknown scheme")
	h.expect(t, "POST", "/v1/pools", `{"name":"x","uri":"null:///?size=12XB"}`, 400, "invalid", "unknown unit")
	h.expect(t, "POST", "/v1/pools", `{"name":"x"}`, 400, "invalid", "pool URI")
	h.expect(t, "POST", "/v1/pools", `{"name":"x","uri":"uring:///no/such/dir/f.img?size=1MiB"}`, 422, "device_error", "no such file")

	// Delete: refused while it holds volumes.
	h.expect(t, "POST", "/v1/volumes", `{"name":"v","pool":"p","size":"1MiB"}`, 201)
	h.expect(t, "DELETE", "/v1/pools/p", "", 409, "conflict", "holds 1 volumes (v)")
	h.expect(t, "DELETE", "/v1/volumes/v", "", 204)
	h.expect(t, "DELETE", "/v1/pools/p", "", 204)
	h.expect(t, "DELETE", "/v1/pools/p", "", 404, "not_found")
}

func TestVolumesEndpoints(t *testing.T) {
	h := newHarness(t, true)
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"malloc:///?size=8MiB&block_size=512"}`, 201)
	v := h.expect(t, "POST", "/v1/volumes", `{"name":"a","pool":"p","size":"2MiB"}`, 201)
	require.EqualValues(t, 2<<20, v["size_bytes"])
	require.EqualValues(t, 512, v["block_size"])
	require.Len(t, v["serial"], 20)
	require.Len(t, v["uuid"], 36)
	require.Len(t, v["nguid"], 32)
	require.Equal(t, v, h.expect(t, "POST", "/v1/volumes", `{"name":"a","pool":"p","size":2097152}`, 200), "a byte count is the same size")
	h.expect(t, "POST", "/v1/volumes", `{"name":"a","pool":"p","size":"3MiB"}`, 409, "conflict", "exists in pool")
	h.expect(t, "POST", "/v1/volumes", `{"name":"b","pool":"p","size":"2MiB"}`, 201)
	require.Equal(t, v, h.expect(t, "GET", "/v1/volumes/a", "", 200))
	require.Len(t, h.expect(t, "GET", "/v1/volumes", "", 200)["volumes"], 2)
	h.expect(t, "GET", "/v1/volumes/zz", "", 404, "not_found")

	// Validation and space.
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"p","size":"1000"}`, 400, "invalid", "not a multiple of pool \"p\"'s block size 512")
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"p","size":"0"}`, 400, "invalid", "more than 0")
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"p"}`, 400, "invalid", "more than 0")
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"p","size":"9MiB"}`, 400, "invalid", "larger than pool")
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"p","size":"5MiB"}`, 409, "no_space", "largest free extent: 4194304")
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"p","size":"1.5GiB"}`, 400, "invalid", "size")
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"p","size":-1}`, 400, "invalid", "size")
	h.expect(t, "POST", "/v1/volumes", `{"name":"c","pool":"q","size":"1MiB"}`, 404, "not_found", `pool "q"`)
	h.expect(t, "POST", "/v1/volumes", `{"name":"","pool":"p","size":"1MiB"}`, 400, "invalid", "volume name")

	// Resize.
	h.expect(t, "POST", "/v1/volumes/a/resize", `{"size":"3MiB"}`, 409, "no_space", `used by volume "b"`)
	h.expect(t, "POST", "/v1/volumes/a/resize", `{"size":"1MiB"}`, 400, "invalid", "shrinking")
	r := h.expect(t, "POST", "/v1/volumes/b/resize", `{"size":"6MiB"}`, 200)
	require.EqualValues(t, 6<<20, r["size_bytes"])
	require.Equal(t, r, h.expect(t, "POST", "/v1/volumes/b/resize", `{"size":"6MiB"}`, 200), "same size: no-op")
	h.expect(t, "POST", "/v1/volumes/zz/resize", `{"size":"6MiB"}`, 404, "not_found")
	h.expect(t, "POST", "/v1/volumes/b/resize", `{"size":"6MiB","pool":"p"}`, 400, "invalid", "unknown field")

	// Delete: refused while shared.
	h.expect(t, "POST", "/v1/shares", `{"volume":"a","nqn":"nqn.2024-01.io.strata:a","listeners":["127.0.0.1:4420"],"allow_any_host":true}`, 201)
	h.expect(t, "DELETE", "/v1/volumes/a", "", 409, "conflict", "remove the share first")
	h.expect(t, "DELETE", "/v1/shares/a", "", 204)
	h.expect(t, "DELETE", "/v1/volumes/a", "", 204)
	h.expect(t, "DELETE", "/v1/volumes/a", "", 404, "not_found")
}

func TestSharesEndpoints(t *testing.T) {
	h := newHarness(t, true)
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"malloc:///?size=8MiB"}`, 201)
	vol := h.expect(t, "POST", "/v1/volumes", `{"name":"v","pool":"p","size":"1MiB"}`, 201)
	h.expect(t, "POST", "/v1/volumes", `{"name":"w","pool":"p","size":"1MiB"}`, 201)
	body := `{"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4420"],"hosts":["nqn.2024-01.io.example:h1"]}`
	sh := h.expect(t, "POST", "/v1/shares", body, 201)
	require.Equal(t, "v", sh["name"])
	require.Equal(t, "exported", sh["state"])
	require.Equal(t, vol["serial"], sh["serial"])
	require.Equal(t, vol["uuid"], sh["namespace_uuid"])
	require.EqualValues(t, 1, sh["nsid"])
	require.Equal(t, []string{"nqn.2024-01.io.strata:v"}, h.x.NQNs())
	h.x.SetSessions("nqn.2024-01.io.strata:v", 2, 1)
	got := h.expect(t, "POST", "/v1/shares", body, 200)
	require.EqualValues(t, 2, got["connections"])
	h.expect(t, "POST", "/v1/shares", `{"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4421"],"allow_any_host":true}`, 409, "conflict", "other settings")
	h.expect(t, "POST", "/v1/shares", `{"volume":"w","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4420"],"allow_any_host":true}`, 409, "conflict", "is used by")
	require.Equal(t, got, h.expect(t, "GET", "/v1/shares/v", "", 200))
	require.Len(t, h.expect(t, "GET", "/v1/shares", "", 200)["shares"], 1)
	h.expect(t, "GET", "/v1/shares/w", "", 404, "not_found")
	require.Equal(t, "nqn.2024-01.io.strata:v", h.expect(t, "GET", "/v1/volumes/v", "", 200)["share"])

	for _, tc := range []struct{ body, msg string }{
		{`{"volume":"w","nqn":"nqn.bad","listeners":["127.0.0.1:4420"],"allow_any_host":true}`, "subsystem NQN"},
		{`{"volume":"w","nqn":"nqn.2024-01.io.strata:w","listeners":["host.example:4420"],"allow_any_host":true}`, "want an IP address"},
		{`{"volume":"w","nqn":"nqn.2024-01.io.strata:w","listeners":[],"allow_any_host":true}`, "0 listeners"},
		{`{"volume":"w","nqn":"nqn.2024-01.io.strata:w","listeners":["127.0.0.1:4420"]}`, "no host could connect"},
		{`{"volume":"w","nqn":"nqn.2024-01.io.strata:w","listeners":["127.0.0.1:4420"],"hosts":["h1"]}`, "host NQN"},
		{`{"volume":"w","nqn":"nqn.2024-01.io.strata:w","listeners":"127.0.0.1:4420","allow_any_host":true}`, "cannot unmarshal"},
	} {
		h.expect(t, "POST", "/v1/shares", tc.body, 400, "invalid", tc.msg)
	}
	h.expect(t, "POST", "/v1/shares", `{"volume":"zz","nqn":"nqn.2024-01.io.strata:zz","listeners":["127.0.0.1:4420"],"allow_any_host":true}`, 404, "not_found")

	h.x.FailNext(context.DeadlineExceeded)
	h.expect(t, "POST", "/v1/shares", `{"volume":"w","nqn":"nqn.2024-01.io.strata:w","listeners":["127.0.0.1:4420"],"allow_any_host":true}`, 502, "export_failed", "deadline")
	h.x.FailNext(context.Canceled)
	h.expect(t, "DELETE", "/v1/shares/v", "", 502, "export_failed")
	h.expect(t, "DELETE", "/v1/shares/v", "", 204)
	h.expect(t, "DELETE", "/v1/shares/v", "", 404, "not_found")
	require.Empty(t, h.x.NQNs())
}

func TestSharesWithoutTarget(t *testing.T) {
	h := newHarness(t, false)
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"malloc:///?size=8MiB"}`, 201)
	h.expect(t, "POST", "/v1/volumes", `{"name":"v","pool":"p","size":"1MiB"}`, 201)
	h.expect(t, "POST", "/v1/shares", `{"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4420"],"allow_any_host":true}`, 503, "target_unavailable", "NVMe-oF target not available")
	st := h.expect(t, "GET", "/v1/status", "", 200)
	require.Equal(t, false, st["target_available"])
}

func TestHostsEndpoints(t *testing.T) {
	h := newHarness(t, true)
	out := h.expect(t, "POST", "/v1/hosts", `{"name":"web1","nqn":"nqn.2024-01.io.example:web1"}`, 201)
	require.Equal(t, map[string]any{"name": "web1", "nqn": "nqn.2024-01.io.example:web1", "shares": []any{}}, out)
	h.expect(t, "POST", "/v1/hosts", `{"name":"web1","nqn":"nqn.2024-01.io.example:web1"}`, 200)
	h.expect(t, "POST", "/v1/hosts", `{"name":"web1","nqn":"nqn.2024-01.io.example:web9"}`, 409, "conflict")
	h.expect(t, "POST", "/v1/hosts", `{"name":"web2","nqn":"nqn.2024-01.io.example:web1"}`, 409, "conflict", `already host "web1"`)
	h.expect(t, "POST", "/v1/hosts", `{"name":"web2","nqn":"web2"}`, 400, "invalid", "nqn")
	require.Equal(t, out, h.expect(t, "GET", "/v1/hosts/web1", "", 200))
	require.Len(t, h.expect(t, "GET", "/v1/hosts", "", 200)["hosts"], 1)
	h.expect(t, "GET", "/v1/hosts/web2", "", 404, "not_found")

	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"malloc:///?size=8MiB"}`, 201)
	h.expect(t, "POST", "/v1/volumes", `{"name":"v","pool":"p","size":"1MiB"}`, 201)
	h.expect(t, "POST", "/v1/shares", `{"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4420"],"hosts":["nqn.2024-01.io.example:web1"]}`, 201)
	h.expect(t, "DELETE", "/v1/hosts/web1", "", 409, "conflict", "allowed by shares v")
	h.expect(t, "DELETE", "/v1/shares/v", "", 204)
	h.expect(t, "DELETE", "/v1/hosts/web1", "", 204)
	h.expect(t, "DELETE", "/v1/hosts/web1", "", 404, "not_found")
}

func TestStatusEndpoint(t *testing.T) {
	h := newHarness(t, true)
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"malloc:///?size=8MiB"}`, 201)
	h.expect(t, "POST", "/v1/volumes", `{"name":"v","pool":"p","size":"1MiB"}`, 201)
	h.expect(t, "POST", "/v1/shares", `{"volume":"v","nqn":"nqn.2024-01.io.strata:v","listeners":["127.0.0.1:4420"],"allow_any_host":true}`, 201)
	h.x.SetSessions("nqn.2024-01.io.strata:v", 4, 1)
	st := h.expect(t, "GET", "/v1/status", "", 200)
	require.Equal(t, "test", st["version"])
	require.EqualValues(t, 4, st["connections"])
	require.EqualValues(t, 1, st["shares"])
	require.Equal(t, true, st["target_available"])
	require.NotEmpty(t, st["reactors"])
	r0 := st["reactors"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "core", "busy_ns", "idle_ns", "busy_percent", "wakeups"} {
		require.Contains(t, r0, k)
	}
	pools := st["pools"].([]any)
	require.EqualValues(t, 7<<20, pools[0].(map[string]any)["free_bytes"])
	vols := st["volumes"].([]any)
	v0 := vols[0].(map[string]any)
	require.Equal(t, "v", v0["name"])
	for _, k := range []string{"read_iops", "write_iops", "read_bytes_per_sec", "write_bytes_per_sec", "io"} {
		require.Contains(t, v0, k)
	}
}

func TestRequestHandling(t *testing.T) {
	h := newHarness(t, true)
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"null:///","colour":"red"}`, 400, "invalid", `unknown field "colour"`)
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"null:///"} {"name":"q"}`, 400, "invalid", "data after the JSON object")
	h.expect(t, "POST", "/v1/pools", ``, 400, "invalid", "empty")
	h.expect(t, "POST", "/v1/pools", `[1,2]`, 400, "invalid", "cannot unmarshal")
	h.expect(t, "POST", "/v1/pools", `{"name":"p","uri":"`+strings.Repeat("x", api.MaxBodyBytes)+`"}`, 413, "too_large")
	h.expect(t, "GET", "/v1/nothing", "", 404, "not_found", "no such API path")
	h.expect(t, "GET", "/v2/pools", "", 404, "not_found")
	status, out := h.call(t, "PUT", "/v1/pools/p", `{}`)
	require.Equal(t, 405, status)
	require.Equal(t, "method_not_allowed", out["code"])
	require.Contains(t, out["message"], "GET, DELETE")
	h.expect(t, "PATCH", "/v1/volumes/v/resize", "", 405, "method_not_allowed")

	resp, err := h.srv.Client().Get(h.srv.URL + "/healthz")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "ok\n", string(b))
	resp, err = h.srv.Client().Get(h.srv.URL + "/metrics")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "metrics here\n", string(b))
	require.Equal(t, 4, h.errors["invalid"])
	require.Equal(t, 1, h.errors["too_large"])
	require.Equal(t, 2, h.errors["method_not_allowed"])
}

func TestRequireToken(t *testing.T) {
	h := newHarness(t, true)
	srv := httptest.NewServer(api.RequireToken(api.NewHandler(h.e, api.Options{}), "s3cret"))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"", 401}, {"Bearer wrong", 401}, {"s3cret", 401}, {"Bearer s3cret", 200}, {"Bearer s3cretX", 401},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/pools", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode, "%q", tc.auth)
		if tc.status == 401 {
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
		}
	}
	resp, err := srv.Client().Get(srv.URL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, "liveness needs no token")

	// The client sends the token.
	c := api.NewClient(srv.URL, "s3cret", srv.Client())
	_, err = c.Pools(context.Background())
	require.NoError(t, err)
	_, err = api.NewClient(srv.URL, "nope", srv.Client()).Pools(context.Background())
	var apiErr *api.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, api.CodeUnauthorized, apiErr.Code)
}

func TestClient(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	c := api.NewClient(h.srv.URL, "", h.srv.Client())
	p, created, err := c.CreatePool(ctx, api.PoolRequest{Name: "p", URI: "malloc:///?size=8MiB"})
	require.NoError(t, err)
	require.True(t, created)
	_, created, err = c.CreatePool(ctx, api.PoolRequest{Name: "p", URI: "malloc:///?size=8MiB"})
	require.NoError(t, err)
	require.False(t, created)
	got, err := c.Pool(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, p, got)
	v, created, err := c.CreateVolume(ctx, api.VolumeRequest{Name: "v", Pool: "p", Size: 1 << 20})
	require.NoError(t, err)
	require.True(t, created)
	v2, err := c.ResizeVolume(ctx, "v", 2<<20)
	require.NoError(t, err)
	require.Equal(t, v.UUID, v2.UUID)
	require.Equal(t, uint64(2<<20), v2.SizeBytes)
	sh, created, err := c.CreateShare(ctx, api.ShareRequest{Volume: "v", NQN: "nqn.2024-01.io.strata:v", Listeners: []string{"127.0.0.1:4420"}, AllowAnyHost: true})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, v.Serial, sh.Serial)
	_, _, err = c.CreateHost(ctx, api.HostRequest{Name: "h", NQN: "nqn.2024-01.io.example:h"})
	require.NoError(t, err)
	pools, _ := c.Pools(ctx)
	vols, _ := c.Volumes(ctx)
	shares, _ := c.Shares(ctx)
	hosts, _ := c.Hosts(ctx)
	require.Len(t, pools, 1)
	require.Len(t, vols, 1)
	require.Len(t, shares, 1)
	require.Len(t, hosts, 1)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.Volumes, 1)

	err = c.DeleteVolume(ctx, "v")
	var apiErr *api.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 409, apiErr.Status)
	require.Equal(t, api.CodeConflict, apiErr.Code)
	require.False(t, api.IsUnreachable(err))
	require.NoError(t, c.DeleteShare(ctx, "v"))
	require.NoError(t, c.DeleteVolume(ctx, "v"))
	require.NoError(t, c.DeleteHost(ctx, "h"))
	require.NoError(t, c.DeletePool(ctx, "p"))

	raw, status, err := c.Raw(ctx, "GET", "/v1/pools", nil)
	require.NoError(t, err)
	require.Equal(t, 200, status)
	require.JSONEq(t, `{"pools":[]}`, string(raw))

	_, err = api.NewUnixClient(filepath.Join(t.TempDir(), "none.sock")).Pools(ctx)
	require.True(t, api.IsUnreachable(err))
	require.ErrorContains(t, err, "unreachable")
	// Something that is not the API.
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	_, err = api.NewClient(other.URL, "", other.Client()).Pools(ctx)
	require.True(t, api.IsUnreachable(err), "%v", err)
}
