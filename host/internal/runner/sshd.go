package runner

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// SSHDConfig says where sshd finds its keys. sshd (protocol.SSHDService)
// is the intrinsic service upstream runs with dropbear: SSH and SFTP into
// the kernel, for the "SSH / SFTP" app and a cluster session's kernels
// reaching each other.
type SSHDConfig struct {
	// BootPort is where sshd starts when the runner starts, as upstream's
	// runner starts its intrinsic services; 0 starts it only on request.
	BootPort int
	// HostKeyPath is the agent-written host key (OpenSSH PEM); without it
	// sshd makes one for this runner's lifetime.
	HostKeyPath string
	// AuthorizedKeys are the files of keys allowed to log in: the user's
	// authorized_keys and the session's cluster public key.
	AuthorizedKeys []string
	// UserKeyDir is /home/work: when its .ssh/authorized_keys is missing
	// (the manager sent no user keypair), sshd makes a keypair there, its
	// private half in id_container for the user to download, as upstream's
	// init_sshd_service does.
	UserKeyDir string
	// ClusterKeyPath and PortMappingPath are the session's cluster key and
	// cluster_ssh_port_mapping; with the key there, sshd adds the
	// session's kernels to the user's .ssh/config, as upstream does.
	ClusterKeyPath  string
	PortMappingPath string
	// KeepaliveInterval is how often sshd asks the client whether it is
	// still there (keepalive@openssh.com), as dropbear's -K 15 in upstream's
	// kernels: the traffic keeps firewalls and NAT from dropping idle
	// sessions, and a client that misses keepaliveMissLimit replies in a
	// row is cut off, so its shells do not run on forever. 0 turns it off.
	KeepaliveInterval time.Duration
}

// keepaliveMissLimit is how many intervals a keepalive may go unanswered
// before the connection is closed (dropbear's DEFAULT_KEEPALIVE_LIMIT).
const keepaliveMissLimit = 3

// defaultSSHDConfig is the layout the agent writes (scratch.WriteSSH).
func defaultSSHDConfig() SSHDConfig {
	return SSHDConfig{
		BootPort:        protocol.SSHDPort,
		HostKeyPath:     "/home/config/ssh/ssh_host_ed25519_key",
		AuthorizedKeys:  []string{"/home/work/.ssh/authorized_keys", "/home/config/ssh/id_cluster.pub"},
		UserKeyDir:      "/home/work",
		ClusterKeyPath:  "/home/config/ssh/id_cluster",
		PortMappingPath: "/home/config/ssh/port-mapping.json",
		// Upstream starts dropbear with -K 15.
		KeepaliveInterval: 15 * time.Second,
	}
}

// sshServer is the runner's sshd: public-key logins only, sessions run as
// the runner's own user (the kernel's), with the kernel's environment.
type sshServer struct {
	cfg       SSHDConfig
	config    *ssh.ServerConfig
	shellPath string // for exec requests: shell -c command
	workDir   string
	env       []string
	cred      *syscall.Credential // the kernel user sessions run as
	log       *slog.Logger

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{} // from accept on, handshakes included
	closed    bool
	wg        sync.WaitGroup
}

func newSSHServer(cfg SSHDConfig, shellPath, workDir string, env []string, cred *syscall.Credential, log *slog.Logger) (*sshServer, error) {
	signer, err := loadOrMakeHostKey(cfg.HostKeyPath)
	if err != nil {
		return nil, err
	}
	if err := ensureUserKey(cfg.UserKeyDir, cred); err != nil {
		log.Warn("sshd: no user keypair and none could be made", "err", err)
	}
	if err := writeClusterSSHConfig(cfg, env, cred); err != nil {
		log.Warn("sshd: the cluster's hosts are not in .ssh/config", "err", err)
	}
	s := &sshServer{cfg: cfg, shellPath: shellPath, workDir: workDir, env: env, cred: cred, log: log, conns: map[net.Conn]struct{}{}}
	s.config = &ssh.ServerConfig{PublicKeyCallback: s.checkKey}
	s.config.AddHostKey(signer)
	return s, nil
}

// checkKey accepts a key listed in one of the authorized-keys files. The
// files are read at every login, so keys the user adds later count.
func (s *sshServer) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	want := key.Marshal()
	for _, path := range s.cfg.AuthorizedKeys {
		keys, err := readAuthorizedKeys(path)
		if err != nil {
			continue
		}
		for _, k := range keys {
			if bytes.Equal(k.Marshal(), want) {
				return &ssh.Permissions{}, nil
			}
		}
	}
	return nil, fmt.Errorf("sshd: key %s of %q is not authorized", ssh.FingerprintSHA256(key), meta.User())
}

// readAuthorizedKeys parses an authorized_keys file, skipping lines that
// are no key (comments, blank lines, garbage).
func readAuthorizedKeys(path string) ([]ssh.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseAuthorizedKeys(raw), nil
}

// parseAuthorizedKeys reads the keys of an authorized_keys file's content.
func parseAuthorizedKeys(raw []byte) []ssh.PublicKey {
	var keys []ssh.PublicKey
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if k, _, _, _, err := ssh.ParseAuthorizedKey(line); err == nil {
			keys = append(keys, k)
		}
	}
	return keys
}

func loadOrMakeHostKey(path string) (ssh.Signer, error) {
	if path != "" {
		if raw, err := os.ReadFile(path); err == nil {
			if signer, err := ssh.ParsePrivateKey(raw); err == nil {
				return signer, nil
			}
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshd host key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sshd host key: %w", err)
	}
	return signer, nil
}

// ensureUserKey makes the user a keypair when the agent wrote none.
func ensureUserKey(dir string, cred *syscall.Credential) error {
	if dir == "" {
		return nil
	}
	sshDir := filepath.Join(dir, ".ssh")
	authorized := filepath.Join(sshDir, "authorized_keys")
	if _, err := os.Stat(authorized); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate user key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("user public key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return fmt.Errorf("user private key: %w", err)
	}
	if err := mkdirAllAs(cred, sshDir); err != nil {
		return fmt.Errorf("user ssh dir: %w", err)
	}
	if err := os.Chmod(sshDir, 0o700); err != nil {
		return fmt.Errorf("user ssh dir: %w", err)
	}
	idFile := filepath.Join(dir, "id_container")
	if err := os.WriteFile(idFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("user private key: %w", err)
	}
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(sshPub), 0o600); err != nil {
		return fmt.Errorf("authorized_keys: %w", err)
	}
	return errors.Join(chownTo(cred, idFile), chownTo(cred, authorized))
}

// writeClusterSSHConfig adds the session's kernels to the user's
// .ssh/config with the cluster key, as upstream's init_sshd_service: by
// sshHostEntry is one Host block of the user's ssh config.
type sshHostEntry struct{ host, hostname, port string }

// parsePortMapping reads port-mapping.json ({host: [hostname, port]}, the
// manager's cluster_ssh_port_mapping), sorted by host. Names that would
// break out of their line in ssh_config are refused.
func parsePortMapping(raw []byte) ([]sshHostEntry, error) {
	var mapping map[string][]json.RawMessage
	if err := json.Unmarshal(raw, &mapping); err != nil {
		return nil, err
	}
	var entries []sshHostEntry
	for host, addr := range mapping {
		var hostname string
		var port int
		if len(addr) != 2 || json.Unmarshal(addr[0], &hostname) != nil || json.Unmarshal(addr[1], &port) != nil {
			return nil, fmt.Errorf("%q: want [hostname, port]", host)
		}
		if host == "" || hostname == "" || strings.ContainsAny(host+hostname, " \t\r\n#\"") || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("%q: [%q, %d] is not a host name and port", host, hostname, port)
		}
		entries = append(entries, sshHostEntry{host: host, hostname: hostname, port: strconv.Itoa(port)})
	}
	slices.SortFunc(entries, func(a, b sshHostEntry) int { return strings.Compare(a.host, b.host) })
	return entries, nil
}

// port-mapping.json's hostname and port when there is one, else one
// "Host <role>*" entry (port 2200) per role of BACKENDAI_CLUSTER_REPLICAS.
// Hosts already in the file are left alone, so restarts add nothing.
func writeClusterSSHConfig(cfg SSHDConfig, env []string, cred *syscall.Credential) error {
	if cfg.ClusterKeyPath == "" || cfg.UserKeyDir == "" {
		return nil
	}
	if _, err := os.Stat(cfg.ClusterKeyPath); err != nil {
		return nil // no cluster key: a single kernel, or an older manager
	}
	var entries []sshHostEntry
	if raw, err := os.ReadFile(cfg.PortMappingPath); err == nil {
		if entries, err = parsePortMapping(raw); err != nil {
			return fmt.Errorf("%s: %w", cfg.PortMappingPath, err)
		}
	} else {
		replicas := "main:1"
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "BACKENDAI_CLUSTER_REPLICAS="); ok && v != "" {
				replicas = v
			}
		}
		for _, pair := range strings.Split(replicas, ",") {
			role, _, _ := strings.Cut(strings.TrimSpace(pair), ":")
			if role != "" {
				entries = append(entries, sshHostEntry{host: role + "*", port: strconv.Itoa(protocol.SSHDPort)})
			}
		}
	}
	path := filepath.Join(cfg.UserKeyDir, ".ssh", "config")
	existing, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var b strings.Builder
	for _, e := range entries {
		if bytes.Contains(append([]byte("\n"), existing...), []byte("\nHost "+e.host+"\n")) {
			continue
		}
		b.WriteString("\nHost " + e.host + "\n")
		if e.hostname != "" {
			b.WriteString("\tHostName " + e.hostname + "\n")
		}
		b.WriteString("\tPort " + e.port + "\n\tStrictHostKeyChecking no\n\tIdentityFile " + cfg.ClusterKeyPath + "\n")
	}
	if b.Len() == 0 {
		return nil
	}
	if err := mkdirAllAs(cred, filepath.Dir(path)); err != nil {
		return fmt.Errorf("user ssh dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, werr := f.WriteString(b.String())
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return chownTo(cred, path)
}

// Listen starts serving on the ports; all or none.
func (s *sshServer) Listen(ports []int) error {
	var ls []net.Listener
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(p)))
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return fmt.Errorf("sshd: listen on port %d: %w", p, err)
		}
		ls = append(ls, l)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		for _, l := range ls {
			_ = l.Close()
		}
		return errors.New("sshd: closed")
	}
	s.listeners = append(s.listeners, ls...)
	for _, l := range ls {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.accept(l) }()
	}
	return nil
}

func (s *sshServer) accept(l net.Listener) {
	for {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serveConn(nc) }()
	}
}

// Close stops listening and drops every connection.
func (s *sshServer) Close() {
	s.mu.Lock()
	s.closed = true
	for _, l := range s.listeners {
		_ = l.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// handshakeTimeout bounds a connection's time to log in, so that silent
// clients do not pile up.
const handshakeTimeout = time.Minute

func (s *sshServer) serveConn(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.conns[nc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		_ = nc.Close()
	}()
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.config)
	if err == nil {
		err = nc.SetDeadline(time.Time{})
	}
	if err != nil {
		s.log.Debug("sshd: handshake", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	stopKeepalive := make(chan struct{})
	defer close(stopKeepalive)
	go s.keepalive(conn, stopKeepalive)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			ch, chReqs, err := nch.Accept()
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.session(ch, chReqs) }()
		case "direct-tcpip":
			// Local port forwarding (ssh -L, editors' remote modes), as
			// dropbear allows by default.
			wg.Add(1)
			go func() { defer wg.Done(); s.forward(nch) }()
		default:
			_ = nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
}

// keepalive asks the client for a sign of life every KeepaliveInterval and
// closes the connection when keepaliveMissLimit intervals pass without an
// answer. Any answer counts: clients refuse the request (OpenSSH does), and
// that is a reply too.
func (s *sshServer) keepalive(conn ssh.Conn, stop <-chan struct{}) {
	if s.cfg.KeepaliveInterval <= 0 {
		return
	}
	tick := time.NewTicker(s.cfg.KeepaliveInterval)
	defer tick.Stop()
	answered := make(chan error, 1) // one request in flight at most
	inFlight, missed := false, 0
	for {
		select {
		case <-stop:
			return
		case err := <-answered:
			if err != nil { // the connection is gone
				return
			}
			inFlight, missed = false, 0
		case <-tick.C:
			if inFlight {
				if missed++; missed >= keepaliveMissLimit {
					s.log.Info("sshd: client stopped answering keepalives, closing", "remote", conn.RemoteAddr())
					_ = conn.Close()
					return
				}
				continue
			}
			inFlight = true
			go func() {
				_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
				answered <- err
			}()
		}
	}
}

func (s *sshServer) forward(nch ssh.NewChannel) {
	var target struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &target); err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	dst, err := net.Dial("tcp", net.JoinHostPort(target.Host, strconv.Itoa(int(target.Port))))
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		_ = dst.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(dst, ch); done <- struct{}{} }()
	go func() { _, _ = io.Copy(ch, dst); done <- struct{}{} }()
	<-done
	_ = ch.Close()
	_ = dst.Close()
	<-done
}

// ptyRequest is RFC 4254 6.2's pty-req payload.
type ptyRequest struct {
	Term     string
	Cols     uint32
	Rows     uint32
	WidthPx  uint32
	HeightPx uint32
	Modes    string
}

// sessionState is one session channel's requests so far.
type sessionState struct {
	env     []string
	pty     *ptyRequest
	started bool

	mu   sync.Mutex
	ptmx *os.File // set once a pty shell or command runs
	pgid int      // the process group to hang up when the client leaves
}

func (s *sshServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	st := &sessionState{}
	done := make(chan struct{})
	defer func() {
		// The client closed the channel: hang up what still runs, as a
		// terminal going away would.
		st.mu.Lock()
		pgid := st.pgid
		st.mu.Unlock()
		if pgid > 0 {
			select {
			case <-done:
			default:
				_ = syscall.Kill(-pgid, syscall.SIGHUP)
			}
		}
	}()
	for req := range reqs {
		ok := false
		replied := make(chan struct{})
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil && kv.Name != "" {
				st.env = append(st.env, kv.Name+"="+kv.Value)
				ok = true
			}
		case "pty-req":
			var p ptyRequest
			if !st.started && ssh.Unmarshal(req.Payload, &p) == nil {
				st.pty, ok = &p, true
			}
		case "window-change":
			var w struct{ Cols, Rows, WidthPx, HeightPx uint32 }
			if ssh.Unmarshal(req.Payload, &w) == nil {
				st.mu.Lock()
				if st.ptmx != nil {
					ok = pty.Setsize(st.ptmx, &pty.Winsize{Cols: uint16(w.Cols), Rows: uint16(w.Rows)}) == nil
				} else if st.pty != nil {
					st.pty.Cols, st.pty.Rows, ok = w.Cols, w.Rows, true
				}
				st.mu.Unlock()
			}
		case "shell", "exec":
			if st.started {
				break
			}
			var command string
			if req.Type == "exec" {
				var p struct{ Command string }
				if ssh.Unmarshal(req.Payload, &p) != nil {
					break
				}
				command = p.Command
			}
			cmd := s.command(command, st)
			if err := s.start(ch, cmd, st, done, replied); err != nil {
				_, _ = fmt.Fprintf(ch.Stderr(), "sshd: %v\r\n", err)
				break
			}
			st.started, ok = true, true
		case "subsystem":
			var p struct{ Name string }
			if st.started || ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				break
			}
			st.started, ok = true, true
			go func() {
				defer close(done)
				s.sftp(ch)
			}()
		}
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
		close(replied)
	}
}

// command is the process of a shell or exec request: the user's shell
// (as a login shell when interactive) or shell -c command, in the work
// dir, with the kernel's environment plus what the client sent.
func (s *sshServer) command(command string, st *sessionState) *exec.Cmd {
	var cmd *exec.Cmd
	if command == "" {
		shell := loginShell(s.shellPath, s.env)
		cmd = exec.Command(shell)
		cmd.Args = []string{"-" + filepath.Base(shell)}
	} else {
		cmd = exec.Command(s.shellPath, "-c", command)
	}
	cmd.Dir = s.workDir
	if fi, err := os.Stat(s.workDir); err != nil || !fi.IsDir() {
		cmd.Dir = "/"
	}
	cmd.Env = append(append([]string(nil), s.env...), st.env...)
	// A session of its own as the kernel user; on a pty, StartWithSize
	// adds the controlling terminal.
	cmd.SysProcAttr = procAttr(s.cred)
	if st.pty != nil && st.pty.Term != "" {
		cmd.Env = append(cmd.Env, "TERM="+st.pty.Term)
	}
	return cmd
}

// loginShell is $SHELL if it runs, else bash if the image has it, else
// the runner's POSIX shell.
func loginShell(fallback string, env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "SHELL="); ok && v != "" {
			if p, err := exec.LookPath(v); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("/bin/bash"); err == nil {
		return p
	}
	return fallback
}

// start runs cmd for the channel and, once it ends, sends its exit status
// and closes the channel; done is closed then.
func (s *sshServer) start(ch ssh.Channel, cmd *exec.Cmd, st *sessionState, done chan struct{}, replied <-chan struct{}) error {
	var wait func() error
	if st.pty != nil {
		st.mu.Lock()
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(st.pty.Cols), Rows: uint16(st.pty.Rows)})
		if err != nil {
			st.mu.Unlock()
			return fmt.Errorf("start %s on a pty: %w", cmd.Path, err)
		}
		st.ptmx, st.pgid = ptmx, cmd.Process.Pid
		st.mu.Unlock()
		go func() { _, _ = io.Copy(ptmx, ch) }()
		output := make(chan struct{})
		// The output ends (EIO) once every holder of the terminal is gone.
		go func() { _, _ = io.Copy(ch, ptmx); close(output) }()
		wait = func() error {
			err := cmd.Wait()
			<-output
			// Under the lock: a window-change may be resizing it.
			st.mu.Lock()
			_ = ptmx.Close()
			st.ptmx = nil
			st.mu.Unlock()
			return err
		}
	} else {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return fmt.Errorf("stdin of %s: %w", cmd.Path, err)
		}
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", cmd.Path, err)
		}
		st.mu.Lock()
		st.pgid = cmd.Process.Pid
		st.mu.Unlock()
		// Not cmd.Stdin = ch: Wait would wait for the client's EOF.
		go func() { _, _ = io.Copy(stdin, ch); _ = stdin.Close() }()
		wait = cmd.Wait
	}
	go func() {
		defer close(done)
		code := exitCodeOf(wait(), 255) // 255: the command could not run, as ssh reports
		// The reply to the exec request goes first: a command that ends at
		// once would otherwise close the channel before it, and the client
		// would see its exec request fail with EOF.
		<-replied
		_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(code)))
		_ = ch.Close()
	}()
	return nil
}

func (s *sshServer) sftp(ch ssh.Channel) {
	defer ch.Close()
	code := 0
	if s.cred != nil && s.cred.Uid != 0 {
		// As the kernel user, like its shells: files it uploads are its
		// own, as with upstream's sftp-server under dropbear.
		code = s.sftpAsUser(ch)
	} else if err := ServeSFTP(ch, s.workDir); err != nil {
		s.log.Debug("sshd: sftp session", "err", err)
	}
	_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(code)))
}

// sftpAsUser serves the session from a child process of this binary
// ("baiagent-kernel-runner sftp-server") running as the kernel user.
func (s *sshServer) sftpAsUser(ch ssh.Channel) int {
	self, err := os.Executable()
	if err != nil {
		s.log.Warn("sshd: sftp", "err", err)
		return 255
	}
	cmd := exec.Command(self, SFTPServerCommand)
	cmd.Dir = s.workDir
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: s.cred}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		s.log.Warn("sshd: sftp", "err", err)
		return 255
	}
	if err := cmd.Start(); err != nil {
		s.log.Warn("sshd: sftp", "err", err)
		return 255
	}
	// Not cmd.Stdin = ch: Wait would wait for the client's EOF.
	go func() { _, _ = io.Copy(stdin, ch); _ = stdin.Close() }()
	return exitCodeOf(cmd.Wait(), 255)
}

// SFTPServerCommand is the runner's argument that makes it an SFTP server
// on its stdin and stdout, for the intrinsic sshd to run as the kernel
// user.
const SFTPServerCommand = "sftp-server"

// ServeSFTP serves one SFTP session over rw, starting in workDir when it
// exists.
func ServeSFTP(rw io.ReadWriter, workDir string) error {
	opts := []sftp.ServerOption{}
	if fi, err := os.Stat(workDir); err == nil && fi.IsDir() {
		opts = append(opts, sftp.WithServerWorkingDirectory(workDir))
	}
	srv, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{rw, nopCloser{rw}}, opts...)
	if err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("sftp: %w", err)
	}
	return nil
}

// nopCloser lets the SFTP server close its side without closing rw, which
// its owner closes.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// startSSHD starts the intrinsic sshd on the request's ports (2200 when
// none), unless it runs already.
func (s *services) startSSHD(req protocol.ServiceRequest) protocol.ServiceResult {
	ports := req.Ports
	if len(ports) == 0 && req.Port > 0 {
		ports = []int{req.Port}
	}
	if len(ports) == 0 {
		ports = []int{protocol.SSHDPort}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sshd != nil {
		return protocol.ServiceResult{Status: "running"}
	}
	srv, err := newSSHServer(s.sshdConfig, s.shellPath, s.dir, s.env, s.cred, s.log)
	if err != nil {
		return protocol.ServiceResult{Status: "failed", Error: err.Error()}
	}
	if err := srv.Listen(ports); err != nil {
		return protocol.ServiceResult{Status: "failed", Error: err.Error()}
	}
	s.sshd = srv
	return protocol.ServiceResult{Status: "started"}
}

// stopSSHD stops the intrinsic sshd; it reports whether it ran.
func (s *services) stopSSHD() bool {
	s.mu.Lock()
	srv := s.sshd
	s.sshd = nil
	s.mu.Unlock()
	if srv == nil {
		return false
	}
	srv.Close()
	return true
}
