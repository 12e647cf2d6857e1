package watcher

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testToken = "s3cret-token"

type harness struct {
	sys   *fakeSystem
	store *fakeStore
	clock *fakeClock
	srv   *Server
	http  *httptest.Server
}

func newHarness(t *testing.T, softReset bool, options ...func(*Options)) *harness {
	t.Helper()
	h := &harness{
		sys:   newFakeSystem(),
		store: &fakeStore{kv: map[string]string{TokenKey: testToken, MountPrefixKey: "/vfroot"}},
		clock: &fakeClock{now: time.Unix(1_700_000_000, 0)},
	}
	opts := Options{
		TargetService:      "baiagent.service",
		SoftResetAvailable: softReset,
		Store:              h.store,
		System:             h.sys,
		Log:                testLogger(t),
		ShutdownDelay:      time.Millisecond,
		Now:                h.clock.Now,
	}
	for _, o := range options {
		o(&opts)
	}
	h.srv = New(opts)
	h.http = httptest.NewServer(h.srv.Handler())
	t.Cleanup(h.http.Close)
	return h
}

// do sends a request; token "" sends no header.
func (h *harness) do(t *testing.T, method, path, token, body string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.http.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set(TokenHeader, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(data)
}

func TestAuthentication(t *testing.T) {
	cases := []struct {
		description string
		etcdToken   *string // nil: key absent
		storeErr    error
		header      string
		wantStatus  int
	}{
		{description: "no header", etcdToken: ptr(testToken), wantStatus: http.StatusForbidden},
		{description: "wrong token", etcdToken: ptr(testToken), header: "nope", wantStatus: http.StatusForbidden},
		{description: "token with a suffix", etcdToken: ptr(testToken), header: testToken + "x", wantStatus: http.StatusForbidden},
		{description: "right token", etcdToken: ptr(testToken), header: testToken, wantStatus: http.StatusOK},
		{description: "no token in etcd: insecure is accepted", header: DefaultToken, wantStatus: http.StatusOK},
		{description: "no token in etcd: anything else is refused", header: testToken, wantStatus: http.StatusForbidden},
		{description: "etcd unreachable and no token yet", storeErr: errors.New("etcd down"), header: testToken, wantStatus: http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			h := newHarness(t, false)
			delete(h.store.kv, TokenKey)
			if tc.etcdToken != nil {
				h.store.kv[TokenKey] = *tc.etcdToken
			}
			h.store.err = tc.storeErr
			h.sys.stdout["systemctl is-active"] = "active\n"
			status, hdr, body := h.do(t, http.MethodGet, "/", tc.header, "")
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", status, tc.wantStatus, body)
			}
			if got := hdr.Get("Server"); got != "BackendAI-AgentWatcher" {
				t.Errorf("Server header %q", got)
			}
			calls, _, _ := h.sys.snapshot()
			if tc.wantStatus != http.StatusOK && len(calls) != 0 {
				t.Errorf("refused request still ran %v", calls)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestTokenCacheWhileEtcdIsDown: a watcher started while etcd is
// unreachable (the agent's embedded etcd is down with the agent) still
// authenticates with the token cached at its last successful read.
func TestTokenCacheWhileEtcdIsDown(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "state", "watcher-token")
	withCache := func(o *Options) { o.TokenCacheFile = cache }

	// A watcher that reads the token from etcd caches it, root-only.
	h := newHarness(t, false, withCache)
	h.sys.stdout["systemctl is-active"] = "active\n"
	if status, _, body := h.do(t, http.MethodGet, "/", testToken, ""); status != http.StatusOK {
		t.Fatalf("status %d (%s)", status, body)
	}
	st, err := os.Stat(cache)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file %v, %v; want mode 0600", st, err)
	}

	cases := []struct {
		description string
		cacheData   *string // nil: leave what the first watcher wrote
		header      string
		wantStatus  int
	}{
		{"cached token accepted", nil, testToken, http.StatusOK},
		{"another token refused", nil, "nope", http.StatusForbidden},
		{"empty cache file is no token", ptr(""), testToken, http.StatusServiceUnavailable},
		{"no cache file", ptr("-"), testToken, http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if tc.cacheData != nil {
				if *tc.cacheData == "-" {
					_ = os.Remove(cache)
				} else if err := os.WriteFile(cache, []byte(*tc.cacheData), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			down := newHarness(t, false, withCache)
			down.store.err = errors.New("etcd down")
			down.sys.stdout["systemctl is-active"] = "active\n"
			if status, _, body := down.do(t, http.MethodGet, "/", tc.header, ""); status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tc.wantStatus, body)
			}
		})
	}
}

func TestAuthenticationAppliesToEveryRoute(t *testing.T) {
	h := newHarness(t, true)
	routes := [][2]string{
		{"GET", "/"}, {"POST", "/soft-reset"}, {"POST", "/hard-reset"}, {"POST", "/shutdown"},
		{"POST", "/agent/start"}, {"POST", "/agent/stop"}, {"POST", "/agent/restart"},
		{"GET", "/fstab"}, {"GET", "/mounts"}, {"POST", "/mounts"}, {"DELETE", "/mounts"},
		{"GET", "/no-such-route"},
	}
	for _, r := range routes {
		if status, _, _ := h.do(t, r[0], r[1], "wrong", ""); status != http.StatusForbidden {
			t.Errorf("%s %s with a wrong token: %d, want 403", r[0], r[1], status)
		}
	}
	if calls, mkdirs, _ := h.sys.snapshot(); len(calls)+len(mkdirs) != 0 {
		t.Errorf("refused requests acted: %v %v", calls, mkdirs)
	}
}

func TestTokenRefresh(t *testing.T) {
	h := newHarness(t, false)
	get := func(token string) int {
		status, _, _ := h.do(t, http.MethodGet, "/", token, "")
		return status
	}
	if s := get(testToken); s != http.StatusOK {
		t.Fatalf("first token: %d", s)
	}
	h.store.set(TokenKey, "rotated")
	if s := get(testToken); s != http.StatusOK {
		t.Fatalf("within the TTL the cached token holds: %d", s)
	}
	h.clock.advance(11 * time.Second)
	if s := get(testToken); s != http.StatusForbidden {
		t.Fatalf("after the TTL the old token must be refused: %d", s)
	}
	if s := get("rotated"); s != http.StatusOK {
		t.Fatalf("rotated token: %d", s)
	}
	h.store.setErr(errors.New("etcd down"))
	h.clock.advance(time.Minute)
	if s := get("rotated"); s != http.StatusOK {
		t.Fatalf("etcd down: the last token must stay in force: %d", s)
	}
	gets := h.store.getCount()
	if s := get("rotated"); s != http.StatusOK || h.store.getCount() != gets {
		t.Fatalf("a failed refresh must not be retried before the TTL (status %d)", s)
	}
}

func TestEndpoints(t *testing.T) {
	fstab := filepath.Join(t.TempDir(), "fstab")
	if err := os.WriteFile(fstab, []byte("# static\nUUID=1 / ext4 defaults 0 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		description string
		softReset   bool
		setup       func(*harness)
		method      string
		path        string
		body        string
		wantStatus  int
		wantJSON    map[string]any
		wantBody    string // substring, when wantJSON is nil
		wantCalls   []string
		wantMkdirs  []string
		wantRmdirs  []string
		wantOff     bool
	}{
		{
			description: "status of a running agent",
			setup:       func(h *harness) { h.sys.stdout["systemctl is-active"] = "active\n" },
			method:      "GET", path: "/", wantStatus: 200,
			wantJSON:  map[string]any{"agent-status": "active", "watcher-status": "active"},
			wantCalls: []string{"systemctl is-active baiagent.service"},
		},
		{
			description: "status of a stopped agent (is-active exits 3)",
			setup: func(h *harness) {
				h.sys.stdout["systemctl is-active"] = "inactive\n"
				h.sys.fail["systemctl is-active"] = errors.New("exit status 3")
			},
			method: "GET", path: "/", wantStatus: 200,
			wantJSON:  map[string]any{"agent-status": "inactive", "watcher-status": "active"},
			wantCalls: []string{"systemctl is-active baiagent.service"},
		},
		{
			description: "status without systemctl",
			setup:       func(h *harness) { h.sys.fail["systemctl"] = errNotFound },
			method:      "GET", path: "/", wantStatus: 200,
			wantJSON:  map[string]any{"message": "Agent is not loaded with systemctl."},
			wantCalls: []string{"systemctl is-active baiagent.service"},
		},
		{
			description: "soft reset when available reloads the unit",
			softReset:   true, method: "POST", path: "/soft-reset", wantStatus: 200,
			wantJSON:  map[string]any{"result": "ok"},
			wantCalls: []string{"systemctl reload baiagent.service"},
		},
		{
			description: "soft reset when disabled is refused and does nothing",
			method:      "POST", path: "/soft-reset", wantStatus: 404,
			wantBody: "soft-reset-available",
		},
		{
			description: "soft reset with GET is a 405",
			softReset:   true, method: "GET", path: "/soft-reset", wantStatus: 405,
		},
		{
			description: "hard reset stops the agent, restarts docker, starts the agent",
			method:      "POST", path: "/hard-reset", wantStatus: 200,
			wantJSON: map[string]any{"result": "ok"},
			wantCalls: []string{"systemctl stop baiagent.service", "systemctl restart docker.service",
				"systemctl start baiagent.service"},
		},
		{
			description: "hard reset goes on past a failed step and reports it",
			setup:       func(h *harness) { h.sys.fail["systemctl restart docker"] = errors.New("exit status 1") },
			method:      "POST", path: "/hard-reset", wantStatus: 500,
			wantBody: "restart docker.service",
			wantCalls: []string{"systemctl stop baiagent.service", "systemctl restart docker.service",
				"systemctl start baiagent.service"},
		},
		{
			description: "agent start", method: "POST", path: "/agent/start", wantStatus: 200,
			wantJSON: map[string]any{"result": "ok"}, wantCalls: []string{"systemctl start baiagent.service"},
		},
		{
			description: "agent stop", method: "POST", path: "/agent/stop", wantStatus: 200,
			wantJSON: map[string]any{"result": "ok"}, wantCalls: []string{"systemctl stop baiagent.service"},
		},
		{
			description: "agent restart", method: "POST", path: "/agent/restart", wantStatus: 200,
			wantJSON: map[string]any{"result": "ok"}, wantCalls: []string{"systemctl restart baiagent.service"},
		},
		{
			description: "failed agent start is a 500 naming the command",
			setup:       func(h *harness) { h.sys.fail["systemctl start"] = errors.New("exit status 5") },
			method:      "POST", path: "/agent/start", wantStatus: 500,
			wantBody: "systemctl start baiagent.service: exit status 5", wantCalls: []string{"systemctl start baiagent.service"},
		},
		{
			description: "shutdown stops the agent, answers, then powers off",
			method:      "POST", path: "/shutdown", wantStatus: 200,
			wantJSON:  map[string]any{"result": "ok"},
			wantCalls: []string{"systemctl stop baiagent.service", "shutdown -h now"},
			wantOff:   true,
		},
		{
			description: "fstab is returned as text",
			method:      "GET", path: "/fstab?fstab_path=" + fstab, wantStatus: 200,
			wantBody: "UUID=1 / ext4 defaults 0 1\n",
		},
		{
			description: "a missing fstab is a 404",
			method:      "GET", path: "/fstab?fstab_path=" + fstab + ".missing", wantStatus: 404,
			wantBody: "does not exist",
		},
		{
			description: "a relative fstab path is refused naming the field",
			method:      "GET", path: "/fstab?fstab_path=etc/fstab", wantStatus: 400,
			wantJSON: map[string]any{"field": "fstab_path", "message": `fstab_path: "etc/fstab" is not an absolute path`},
		},
		{
			description: "an unclean fstab path is refused",
			method:      "GET", path: "/fstab?fstab_path=/etc/../etc/shadow", wantStatus: 400,
			wantBody: `"field":"fstab_path"`,
		},
		{
			description: "mounts lists the direct children of volumes/_mount",
			setup: func(h *harness) {
				h.sys.procMounts = "sysfs /sys sysfs rw 0 0\n" +
					"nas:/b /vfroot/b nfs4 rw 0 0\n" +
					"nas:/a /vfroot/a nfs4 rw 0 0\n" +
					"nas:/a /vfroot/a nfs4 rw 0 0\n" +
					"nas:/s /vfroot/with\\040space nfs4 rw 0 0\n" +
					"nas:/deep /vfroot/a/deep nfs4 rw 0 0\n" +
					"nas:/root /vfroot nfs4 rw 0 0\n" +
					"nas:/x /vfrootx/y nfs4 rw 0 0\n"
			},
			method: "GET", path: "/mounts", wantStatus: 200,
			wantBody: `["/vfroot/a","/vfroot/b","/vfroot/with space"]`,
		},
		{
			description: "mounts uses /mnt when etcd has no volumes/_mount",
			setup: func(h *harness) {
				delete(h.store.kv, MountPrefixKey)
				h.sys.procMounts = "nas:/a /mnt/a nfs rw 0 0\nnas:/b /vfroot/b nfs rw 0 0\n"
			},
			method: "GET", path: "/mounts", wantStatus: 200, wantBody: `["/mnt/a"]`,
		},
		{
			description: "mount with options",
			method:      "POST", path: "/mounts",
			body:       `{"name":"data","fs_type":"nfs4","fs_location":"nas:/export/data","options":"vers=4.1,noatime","edit_fstab":false,"fstab_path":null}`,
			wantStatus: 200,
			wantCalls:  []string{"mount -t nfs4 -o vers=4.1,noatime -- nas:/export/data /vfroot/data"},
			wantMkdirs: []string{"/vfroot/data"},
		},
		{
			description: "mount without options",
			method:      "POST", path: "/mounts",
			body:       `{"name":"data","fs_type":"cifs","fs_location":"//srv/share"}`,
			wantStatus: 200,
			wantCalls:  []string{"mount -t cifs -- //srv/share /vfroot/data"},
			wantMkdirs: []string{"/vfroot/data"},
		},
		{
			description: "a failed mount is a 500 and removes the directory it created",
			setup:       func(h *harness) { h.sys.fail["mount"] = errors.New("exit status 32") },
			method:      "POST", path: "/mounts",
			body:       `{"name":"data","fs_type":"nfs","fs_location":"nas:/x"}`,
			wantStatus: 500, wantBody: "exit status 32",
			wantCalls:  []string{"mount -t nfs -- nas:/x /vfroot/data"},
			wantMkdirs: []string{"/vfroot/data"}, wantRmdirs: []string{"/vfroot/data"},
		},
		{
			description: "a failed mount keeps a directory that was already there",
			setup: func(h *harness) {
				h.sys.fail["mount"] = errors.New("exit status 32")
				h.sys.existing["/vfroot/data"] = true
			},
			method: "POST", path: "/mounts",
			body:       `{"name":"data","fs_type":"nfs","fs_location":"nas:/x"}`,
			wantStatus: 500,
			wantCalls:  []string{"mount -t nfs -- nas:/x /vfroot/data"},
			wantMkdirs: []string{"/vfroot/data"},
		},
		{
			description: "a mount point that cannot be created is a 500 before mounting",
			setup:       func(h *harness) { h.sys.fail["mkdir"] = errors.New("no such file or directory") },
			method:      "POST", path: "/mounts",
			body:       `{"name":"data","fs_type":"nfs","fs_location":"nas:/x"}`,
			wantStatus: 500, wantBody: "cannot create the mount point /vfroot/data",
			wantMkdirs: []string{"/vfroot/data"},
		},
		{
			description: "unmount removes the empty directory",
			method:      "DELETE", path: "/mounts", body: `{"name":"data","edit_fstab":false}`,
			wantStatus: 200,
			wantCalls:  []string{"umount -- /vfroot/data"}, wantRmdirs: []string{"/vfroot/data"},
		},
		{
			description: "a failed unmount is a 500 and keeps the directory",
			setup:       func(h *harness) { h.sys.fail["umount"] = errors.New("exit status 32") },
			method:      "DELETE", path: "/mounts", body: `{"name":"data"}`,
			wantStatus: 500, wantBody: "umount -- /vfroot/data: exit status 32: fake failure",
			wantCalls: []string{"umount -- /vfroot/data"},
		},
		{
			description: "etcd down: mounts answer 503",
			setup:       func(h *harness) { h.srv.RefreshToken(t.Context()); h.store.err = errors.New("etcd down") },
			method:      "GET", path: "/mounts", wantStatus: 503, wantBody: "volumes/_mount",
		},
		{
			description: "a relative volumes/_mount is refused",
			setup:       func(h *harness) { h.store.kv[MountPrefixKey] = "mnt" },
			method:      "POST", path: "/mounts", body: `{"name":"data","fs_type":"nfs","fs_location":"nas:/x"}`,
			wantStatus: 503, wantBody: "not an absolute path",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			h := newHarness(t, tc.softReset)
			if tc.setup != nil {
				tc.setup(h)
			}
			status, _, body := h.do(t, tc.method, tc.path, testToken, tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", status, tc.wantStatus, body)
			}
			if tc.wantJSON != nil {
				var got map[string]any
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				for k, v := range tc.wantJSON {
					if got[k] != v {
						t.Errorf("%s = %v, want %v (body %s)", k, got[k], v, body)
					}
				}
			} else if !strings.Contains(body, tc.wantBody) {
				t.Errorf("body %q does not contain %q", body, tc.wantBody)
			}
			if tc.wantOff {
				select {
				case <-h.sys.shutdown:
				case <-time.After(5 * time.Second):
					t.Fatal("no power-off after POST /shutdown")
				}
				h.srv.Wait()
			}
			calls, mkdirs, rmdirs := h.sys.snapshot()
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("commands %q, want %q", calls, tc.wantCalls)
			}
			if !slices.Equal(mkdirs, tc.wantMkdirs) {
				t.Errorf("mkdirs %q, want %q", mkdirs, tc.wantMkdirs)
			}
			if !slices.Equal(rmdirs, tc.wantRmdirs) {
				t.Errorf("rmdirs %q, want %q", rmdirs, tc.wantRmdirs)
			}
		})
	}
}

func TestMountRequestsAreValidated(t *testing.T) {
	cases := []struct {
		description string
		method      string
		body        string
		wantField   string
	}{
		{"empty body", "POST", ``, "body"},
		{"not JSON", "POST", `name=data`, "body"},
		{"a JSON array", "POST", `[1]`, "body"},
		{"two objects", "POST", `{"name":"a","fs_type":"nfs","fs_location":"n:/"} {}`, "body"},
		{"name missing", "POST", `{"fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name with a slash", "POST", `{"name":"a/b","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name is ..", "POST", `{"name":"..","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name is .", "POST", `{"name":".","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name containing ..", "POST", `{"name":"a..b","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name with a space", "POST", `{"name":"a b","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name starting with a dash", "POST", `{"name":"-x","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name with a NUL", "POST", `{"name":"a\u0000","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name too long", "POST", `{"name":"` + strings.Repeat("a", 256) + `","fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"name of the wrong type", "POST", `{"name":5,"fs_type":"nfs","fs_location":"nas:/x"}`, "name"},
		{"fs_type missing", "POST", `{"name":"a","fs_location":"nas:/x"}`, "fs_type"},
		{"fs_type with a shell metacharacter", "POST", `{"name":"a","fs_type":"nfs;reboot","fs_location":"nas:/x"}`, "fs_type"},
		{"fs_type as an option", "POST", `{"name":"a","fs_type":"-oremount","fs_location":"nas:/x"}`, "fs_type"},
		{"fs_type upper case", "POST", `{"name":"a","fs_type":"NFS","fs_location":"nas:/x"}`, "fs_type"},
		{"fs_location missing", "POST", `{"name":"a","fs_type":"nfs"}`, "fs_location"},
		{"fs_location as an option", "POST", `{"name":"a","fs_type":"nfs","fs_location":"--bind"}`, "fs_location"},
		{"fs_location with a space", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x y"}`, "fs_location"},
		{"fs_location with a command substitution", "POST", `{"name":"a","fs_type":"nfs","fs_location":"$(reboot)"}`, "fs_location"},
		{"fs_location with a newline", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x\n/ / ext4"}`, "fs_location"},
		{"options with a semicolon", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x","options":"rw;reboot"}`, "options"},
		{"options with a space", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x","options":"rw ro"}`, "options"},
		{"options starting with a dash", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x","options":"-v"}`, "options"},
		{"options of the wrong type", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x","options":["rw"]}`, "options"},
		{"edit_fstab of the wrong type", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x","edit_fstab":"yes"}`, "edit_fstab"},
		{"relative fstab_path", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x","edit_fstab":true,"fstab_path":"fstab"}`, "fstab_path"},
		{"fstab_path with ..", "POST", `{"name":"a","fs_type":"nfs","fs_location":"nas:/x","edit_fstab":true,"fstab_path":"/etc/../fstab"}`, "fstab_path"},
		{"unmount without a name", "DELETE", `{"edit_fstab":false}`, "name"},
		{"unmount of the prefix itself", "DELETE", `{"name":""}`, "name"},
		{"unmount with a traversal", "DELETE", `{"name":"../etc"}`, "name"},
		{"unmount with a relative fstab_path", "DELETE", `{"name":"a","edit_fstab":true,"fstab_path":"x/fstab"}`, "fstab_path"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			h := newHarness(t, false)
			status, _, body := h.do(t, tc.method, "/mounts", testToken, tc.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 (body %q)", status, body)
			}
			var got struct{ Field, Message string }
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if got.Field != tc.wantField || !strings.HasPrefix(got.Message, tc.wantField+": ") {
				t.Errorf("field %q message %q, want field %q named in the message", got.Field, got.Message, tc.wantField)
			}
			if calls, mkdirs, rmdirs := h.sys.snapshot(); len(calls)+len(mkdirs)+len(rmdirs) != 0 {
				t.Errorf("a refused request acted: %v %v %v", calls, mkdirs, rmdirs)
			}
		})
	}
}

func TestFstabEditRoundTrip(t *testing.T) {
	const original = "# /etc/fstab: static file system information.\n" +
		"UUID=1234 /     ext4 errors=remount-ro 0 1\n" +
		"\n" +
		"tmpfs      /tmp  tmpfs defaults 0 0" // no final newline
	fstab := filepath.Join(t.TempDir(), "fstab")
	if err := os.WriteFile(fstab, []byte(original), 0o640); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		data, err := os.ReadFile(fstab)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	h := newHarness(t, false)
	mount := `{"name":"data","fs_type":"nfs4","fs_location":"nas:/export/data","options":"vers=4.1","edit_fstab":true,"fstab_path":"` + fstab + `"}`
	steps := []struct {
		description string
		method      string
		body        string
		want        string
	}{
		{"mount adds the entry", "POST", mount, original + "\nnas:/export/data /vfroot/data nfs4 vers=4.1 0 0\n"},
		{"mounting again adds no duplicate", "POST", mount, original + "\nnas:/export/data /vfroot/data nfs4 vers=4.1 0 0\n"},
		{"mount without options writes defaults", "POST",
			`{"name":"scratch","fs_type":"tmpfs","fs_location":"tmpfs-scratch","edit_fstab":true,"fstab_path":"` + fstab + `"}`,
			original + "\nnas:/export/data /vfroot/data nfs4 vers=4.1 0 0\ntmpfs-scratch /vfroot/scratch tmpfs defaults 0 0\n"},
		{"unmount removes its entry", "DELETE", `{"name":"data","edit_fstab":true,"fstab_path":"` + fstab + `"}`,
			original + "\ntmpfs-scratch /vfroot/scratch tmpfs defaults 0 0\n"},
		{"unmount without edit_fstab keeps the file", "DELETE", `{"name":"scratch","fstab_path":"` + fstab + `"}`,
			original + "\ntmpfs-scratch /vfroot/scratch tmpfs defaults 0 0\n"},
		{"unmount removes the last entry", "DELETE", `{"name":"scratch","edit_fstab":true,"fstab_path":"` + fstab + `"}`,
			original + "\n"},
	}
	for _, step := range steps {
		status, _, body := h.do(t, step.method, "/mounts", testToken, step.body)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d (%s)", step.description, status, body)
		}
		if got := read(); got != step.want {
			t.Fatalf("%s: fstab\n%q\nwant\n%q", step.description, got, step.want)
		}
	}
	info, err := os.Stat(fstab)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o640 {
		t.Errorf("fstab mode %v, want 0640 kept", info.Mode().Perm())
	}
	// GET /fstab shows the same text.
	if status, _, body := h.do(t, "GET", "/fstab?fstab_path="+fstab, testToken, ""); status != 200 || body != read() {
		t.Errorf("GET /fstab: %d %q", status, body)
	}
}

func TestFstabEditOfAMissingFileIsReported(t *testing.T) {
	h := newHarness(t, false)
	missing := filepath.Join(t.TempDir(), "nope")
	status, _, body := h.do(t, "POST", "/mounts", testToken,
		`{"name":"data","fs_type":"nfs","fs_location":"nas:/x","edit_fstab":true,"fstab_path":"`+missing+`"}`)
	if status != http.StatusInternalServerError || !strings.Contains(body, "mounted /vfroot/data, but could not add it to "+missing) {
		t.Fatalf("status %d body %q", status, body)
	}
}
