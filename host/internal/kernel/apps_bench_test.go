package kernel_test

// BenchmarkStartServiceSideBySide (issue 15): starting the python test
// app until its host port answers HTTP, ours (start_service of the
// jupyter-style definition: write_tempfile prestart, {ref} in the
// command, the runner's own port wait) against the same app started by
// `docker exec` (ExecCreate + detached ExecStart of python3 /opt/app.py on
// the same container port) in the same kernel, interleaved.
//
// Run: cd host && go test -run '^$' -bench StartServiceSideBySide -benchtime 20x ./internal/kernel/

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

func BenchmarkStartServiceSideBySide(b *testing.B) {
	e := newEnv(b)
	image := buildAppsImage(b, e.docker)
	m := e.manager(b)
	start(b, m)
	req := request(e.kid("k-bench-apps"))
	req.Image = image
	created := create(b, m, req)
	var hostPort int
	for _, sp := range created.ServicePorts {
		if sp.Name == "jupyter" {
			hostPort = sp.HostPorts[0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/", hostPort)
	hc := http.Client{Timeout: time.Second}
	answers := func() bool {
		resp, err := hc.Get(url)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	waitFor := func(want bool) {
		deadline := time.Now().Add(30 * time.Second)
		for answers() != want {
			if time.Now().After(deadline) {
				b.Fatalf("port %d answering: want %v after 30 s", hostPort, want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	dockerExecDetached := func(cmd ...string) {
		ex, err := e.docker.ExecCreate(ctx, created.ContainerID, client.ExecCreateOptions{Cmd: cmd})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.docker.ExecStart(ctx, ex.ID, client.ExecStartOptions{Detach: true}); err != nil {
			b.Fatal(err)
		}
	}
	makers := []struct {
		name  string
		start func()
		stop  func()
	}{
		{"start_service", func() {
			res, err := m.StartService(ctx, e.kid("k-bench-apps"), protocol.ServiceRequest{Name: "jupyter"})
			if err != nil || res.Status != "started" {
				b.Fatalf("start_service: %+v, %v", res, err)
			}
			waitFor(true)
		}, func() {
			if err := m.ShutdownService(ctx, e.kid("k-bench-apps"), "jupyter"); err != nil {
				b.Fatal(err)
			}
		}},
		{"docker-exec", func() {
			dockerExecDetached("sh", "-c", "echo $$ > /tmp/bench-app.pid; exec python3 /opt/app.py 8090")
			waitFor(true)
		}, func() {
			dockerExecDetached("sh", "-c", "kill $(cat /tmp/bench-app.pid)")
		}},
	}
	lat := make([]latencies, len(makers))
	for i := 0; b.Loop(); i++ {
		for j := range makers {
			k := (i + j) % len(makers)
			t0 := time.Now()
			makers[k].start()
			lat[k] = append(lat[k], time.Since(t0))
			b.StopTimer()
			makers[k].stop()
			waitFor(false)
			b.StartTimer()
		}
	}
	b.StopTimer()
	p50 := make([]float64, len(makers))
	for k, mk := range makers {
		p50[k] = lat[k].percentileMs(50)
		b.ReportMetric(p50[k], mk.name+"-p50-ms")
		b.ReportMetric(lat[k].percentileMs(99), mk.name+"-p99-ms")
	}
	b.ReportMetric(p50[0]/p50[1], "ours/docker-exec")
	if _, err := m.Destroy(ctx, e.kid("k-bench-apps"), ""); err != nil {
		b.Fatal(err)
	}
}
