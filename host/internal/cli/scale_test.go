package cli

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
)

// TestCreateDestroyCyclesLeaveNothing runs the real `baiagent server`,
// creates 20 kernels four at a time and destroys them, three times: after
// every cycle no container, scratch dir, allocation or host port is left,
// and after the second and third the agent holds no more goroutines or fds
// than after the first (which fills its Docker and Redis connection pools).
// scripts/bench-scale.sh does the same with 200 kernels.
func TestCreateDestroyCyclesLeaveNothing(t *testing.T) {
	const kernels, concurrency, cycles = 20, 4, 3
	docker := kerneltest.Docker(t)
	kerneltest.BuildBusybox(t, docker)
	a := buildAgentWith(t, "\n[debug]\nenabled = true\n")
	// 4 host ports per kernel: widen buildAgent's 16-port pool to the 100
	// ports of its block.
	cfg, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	a.portMax = a.portMin + 99
	cfg = regexp.MustCompile(`port-range = \[\d+, \d+\]`).ReplaceAll(cfg, fmt.Appendf(nil, "port-range = [%d, %d]", a.portMin, a.portMax))
	if err := os.WriteFile(a.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	idle := a.allocated(t)
	env := testEnv(t, nil)
	started := regexp.MustCompile(`kernel (\S+) \(session \S+\) left running`)

	var goroutines, fds int
	for cycle := 1; cycle <= cycles; cycle++ {
		ids := make([]string, kernels)
		parallel(t, kernels, concurrency, func(i int) error {
			_, stderr, err := run(t, env, "kernel", "run", "--keep", "--addr", "tcp://"+a.rpcAddr,
				"--image", kerneltest.BusyboxImage, "--cpu", "0.5", "--mem", "64m", "true")
			m := started.FindStringSubmatch(stderr)
			if err != nil || m == nil {
				return fmt.Errorf("kernel run: %v\n%s", err, stderr)
			}
			ids[i] = m[1]
			return nil
		})
		listed := a.kernels(t)
		if len(listed) != kernels {
			t.Fatalf("cycle %d: %d kernels listed, want %d", cycle, len(listed), kernels)
		}
		var ports []int
		for _, k := range listed {
			ports = append(ports, hostPorts(k)...)
		}
		parallel(t, kernels, concurrency, func(i int) error {
			if _, stderr, err := run(t, env, "kernel", "destroy", "--addr", "tcp://"+a.rpcAddr, ids[i]); err != nil {
				return fmt.Errorf("kernel destroy %s: %v\n%s", ids[i], err, stderr)
			}
			return nil
		})

		if left := a.kernels(t); len(left) != 0 {
			t.Errorf("cycle %d: %d kernels still listed", cycle, len(left))
		}
		a.wantOnly(t, docker, nil)
		if got := a.allocated(t); !equalAmounts(got, idle) {
			t.Errorf("cycle %d: allocated %v after destroying every kernel, want %v", cycle, got, idle)
		}
		// Docker stops a container's port proxies after its removal
		// returns: give them a little while.
		var taken []string
		for range 50 {
			taken = takenPorts(ports)
			if len(taken) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, p := range taken {
			t.Errorf("cycle %d: host port still taken: %s", cycle, p)
		}
		// The pool hands out every port but those another program holds
		// (other tests on this machine may use the same range).
		free := a.assignAll(t)
		for p := a.portMin; p <= a.portMax; p++ {
			if !slices.Contains(free, p) && len(takenPorts([]int{p})) == 0 {
				t.Errorf("cycle %d: port %d is free on the host but not in the agent's pool", cycle, p)
			}
		}
		if t.Failed() {
			t.Fatalf("agent log:\n%s", a.logs.String())
		}
		if cycle == 1 {
			goroutines, fds = a.settled(t, 0, 0)
			continue
		}
		// What ends after a destroy answers (a connection's reader, a
		// docker-proxy's pipe) gets a little while.
		if g, f := a.settled(t, goroutines, fds); g > goroutines || f > fds {
			t.Errorf("cycle %d: %d goroutines and %d fds, after the first cycle %d and %d\n%s",
				cycle, g, f, goroutines, fds, a.goroutineDump(t))
		}
	}
}

// takenPorts lists the ports something (a docker-proxy, say) still listens
// on.
func takenPorts(ports []int) []string {
	var taken []string
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			taken = append(taken, err.Error())
			continue
		}
		_ = ln.Close()
	}
	return taken
}

// parallel runs do(0..n-1), at most width at a time, and fails the test
// with every error.
func parallel(t *testing.T, n, width int, do func(i int) error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, width)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := do(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
}

// settled reads the agent's goroutines (pprof) and open fds until both are
// at most the given counts, or for 10 s, and returns the last reading.
func (a *realAgent) settled(t *testing.T, goroutines, fds int) (int, int) {
	t.Helper()
	var g, f int
	for range 50 {
		g, f = a.goroutines(t), a.fds(t)
		if g <= goroutines && f <= fds {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return g, f
}

func (a *realAgent) goroutines(t *testing.T) int {
	t.Helper()
	first, _, _ := strings.Cut(a.goroutineDump(t), "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if err != nil {
		t.Fatalf("goroutine profile starts with %q", first)
	}
	return n
}

func (a *realAgent) goroutineDump(t *testing.T) string {
	t.Helper()
	// Without keep-alive: an idle connection would be one more goroutine
	// and fd in the agent.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + a.internalAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

func (a *realAgent) fds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// equalAmounts compares allocations slot by slot, as decimals.
func equalAmounts(got, want map[string]decimal.Decimal) bool {
	if len(got) != len(want) {
		return false
	}
	for slot, amount := range want {
		if !got[slot].Equal(amount) {
			return false
		}
	}
	return true
}
