package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/strata-storage/strata/engine"
)

// DefaultSocket is where the daemon serves the API by default.
const DefaultSocket = "/run/strata/strata.sock"

// dialTimeout bounds connecting to the daemon.
const dialTimeout = 5 * time.Second

// maxResponseBytes bounds an answer the client reads.
const maxResponseBytes = 16 << 20

// Error is an error answer from the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// UnreachableError reports a daemon that could not be talked to: no
// socket, nobody listening, a broken connection, an answer that is not the
// API's.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("strata daemon at %s unreachable: %v", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Client talks to the API.
type Client struct {
	hc    *http.Client
	base  string // scheme://host, no trailing slash
	addr  string // for messages
	token string
}

// NewUnixClient returns a client of the daemon serving socket.
func NewUnixClient(socket string) *Client {
	d := net.Dialer{Timeout: dialTimeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 1,
	}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://strata", addr: socket}
}

// NewClient returns a client of the API at baseURL (http://host:port),
// sending token as a bearer token when it is not empty.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{hc: hc, base: baseURL, addr: baseURL, token: token}
}

// do sends a request with body (JSON-encoded unless nil) and decodes a
// successful answer into out (unless nil). It returns the HTTP status.
func (c *Client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, &UnreachableError{Addr: c.addr, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return resp.StatusCode, &UnreachableError{Addr: c.addr, Err: err}
	}
	if resp.StatusCode >= 400 {
		var e ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			return resp.StatusCode, &UnreachableError{Addr: c.addr, Err: fmt.Errorf("HTTP %s without an API error body", resp.Status)}
		}
		return resp.StatusCode, &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, &UnreachableError{Addr: c.addr, Err: fmt.Errorf("answer is not the API's: %v", err)}
		}
	}
	return resp.StatusCode, nil
}

// Raw performs a GET of path and returns the body as it came: for -o json.
func (c *Client) Raw(ctx context.Context, method, path string, body any) ([]byte, int, error) {
	var raw json.RawMessage
	status, err := c.do(ctx, method, path, body, &raw)
	return raw, status, err
}

func esc(name string) string { return url.PathEscape(name) }

// CreatePool creates a pool; created is false when it existed already.
func (c *Client) CreatePool(ctx context.Context, req PoolRequest) (p engine.Pool, created bool, err error) {
	status, err := c.do(ctx, http.MethodPost, "/v1/pools", req, &p)
	return p, status == http.StatusCreated, err
}

// Pools lists the pools.
func (c *Client) Pools(ctx context.Context) ([]engine.Pool, error) {
	var l PoolList
	_, err := c.do(ctx, http.MethodGet, "/v1/pools", nil, &l)
	return l.Pools, err
}

// Pool returns one pool.
func (c *Client) Pool(ctx context.Context, name string) (p engine.Pool, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/pools/"+esc(name), nil, &p)
	return p, err
}

// DeletePool deletes a pool.
func (c *Client) DeletePool(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/pools/"+esc(name), nil, nil)
	return err
}

// CreateVolume creates a volume; created is false when it existed already.
func (c *Client) CreateVolume(ctx context.Context, req VolumeRequest) (v engine.Volume, created bool, err error) {
	status, err := c.do(ctx, http.MethodPost, "/v1/volumes", req, &v)
	return v, status == http.StatusCreated, err
}

// Volumes lists the volumes.
func (c *Client) Volumes(ctx context.Context) ([]engine.Volume, error) {
	var l VolumeList
	_, err := c.do(ctx, http.MethodGet, "/v1/volumes", nil, &l)
	return l.Volumes, err
}

// Volume returns one volume.
func (c *Client) Volume(ctx context.Context, name string) (v engine.Volume, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/volumes/"+esc(name), nil, &v)
	return v, err
}

// ResizeVolume grows a volume.
func (c *Client) ResizeVolume(ctx context.Context, name string, size Size) (v engine.Volume, err error) {
	_, err = c.do(ctx, http.MethodPost, "/v1/volumes/"+esc(name)+"/resize", ResizeRequest{Size: size}, &v)
	return v, err
}

// DeleteVolume deletes a volume.
func (c *Client) DeleteVolume(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/volumes/"+esc(name), nil, nil)
	return err
}

// CheckPool verifies a volume store pool and returns the faults found.
func (c *Client) CheckPool(ctx context.Context, name string) ([]string, error) {
	var out CheckResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/pools/"+esc(name)+"/check", nil, &out)
	return out.Faults, err
}

// CreateSnapshot takes a snapshot; created is false when it existed
// already.
func (c *Client) CreateSnapshot(ctx context.Context, req SnapshotRequest) (s engine.Snapshot, created bool, err error) {
	status, err := c.do(ctx, http.MethodPost, "/v1/snapshots", req, &s)
	return s, status == http.StatusCreated, err
}

// Snapshots lists the snapshots, of one volume when volume is not "".
func (c *Client) Snapshots(ctx context.Context, volume string) ([]engine.Snapshot, error) {
	var l SnapshotList
	path := "/v1/snapshots"
	if volume != "" {
		path += "?volume=" + url.QueryEscape(volume)
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, &l)
	return l.Snapshots, err
}

// DeleteSnapshot deletes a snapshot.
func (c *Client) DeleteSnapshot(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/snapshots/"+esc(name), nil, nil)
	return err
}

// CreateShare shares a volume; created is false when it was shared so
// already.
func (c *Client) CreateShare(ctx context.Context, req ShareRequest) (s engine.Share, created bool, err error) {
	status, err := c.do(ctx, http.MethodPost, "/v1/shares", req, &s)
	return s, status == http.StatusCreated, err
}

// Shares lists the shares.
func (c *Client) Shares(ctx context.Context) ([]engine.Share, error) {
	var l ShareList
	_, err := c.do(ctx, http.MethodGet, "/v1/shares", nil, &l)
	return l.Shares, err
}

// DeleteShare removes a share.
func (c *Client) DeleteShare(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/shares/"+esc(name), nil, nil)
	return err
}

// CreateHost records a host; created is false when it existed already.
func (c *Client) CreateHost(ctx context.Context, req HostRequest) (h engine.Host, created bool, err error) {
	status, err := c.do(ctx, http.MethodPost, "/v1/hosts", req, &h)
	return h, status == http.StatusCreated, err
}

// Hosts lists the hosts.
func (c *Client) Hosts(ctx context.Context) ([]engine.Host, error) {
	var l HostList
	_, err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, &l)
	return l.Hosts, err
}

// DeleteHost forgets a host.
func (c *Client) DeleteHost(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/hosts/"+esc(name), nil, nil)
	return err
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (s StatusResponse, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// IsUnreachable reports whether err means the daemon could not be reached.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}
