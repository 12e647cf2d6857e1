package kernel_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
)

// TestImageLabelsFromRequest: features (uid-match), envs.corecount and
// endpoint-ports are read from the request's image.labels as upstream's
// create_kernel reads them (agent/agent.py, 26.8.1), over what the local
// image says, and they survive restart_kernel. A kernel without GPUs gets
// GPU_COUNT=N_GPUS=0 and no GPU_TYPE.
func TestImageLabelsFromRequest(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	req := request(e.kid("k-labels"))
	req.Env["NPROC"] = "7"
	gid := 3000
	req.MainGID = &gid
	// The busybox image has none of these; its service-ports label
	// publishes "web".
	req.ImageLabels = map[string]string{
		kernel.ImageLabelFeatures: "uid-match", kernel.ImageLabelEnvsCorecount: "OMP_NUM_THREADS,NPROC",
		kernel.ImageLabelEndpointPorts: "web",
	}
	check := func(what string, created kernel.Created) {
		t.Helper()
		var web bool
		for _, sp := range created.ServicePorts {
			if sp.Name == "web" {
				web = sp.IsInference
			}
		}
		if !web {
			t.Errorf("%s: web is not an inference port: %+v", what, created.ServicePorts)
		}
		insp, err := e.docker.ContainerInspect(ctx, created.ContainerID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for _, kv := range insp.Container.Config.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		for k, v := range map[string]string{"OMP_NUM_THREADS": "1", "NPROC": "7", "GPU_COUNT": "0", "N_GPUS": "0", "LOCAL_GROUP_ID": "3000"} {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", what, k, env[k], v)
			}
		}
		if _, ok := env["GPU_TYPE"]; ok {
			t.Errorf("%s: GPU_TYPE set without GPUs", what)
		}
		// uid-match with main_gid: the agent's kernel-gid joins the groups.
		if !slices.Contains(strings.Split(env["ADDITIONAL_GIDS"], ","), "1000") {
			t.Errorf("%s: ADDITIONAL_GIDS=%q lacks kernel-gid 1000 of a uid-match image", what, env["ADDITIONAL_GIDS"])
		}
	}
	created := create(t, m, req)
	check("created", created)
	wantOutput(t, run(t, m, e.kid("k-labels"), "r1", runnerclient.ModeQuery, "echo $OMP_NUM_THREADS $NPROC $GPU_COUNT"), 0, "1 7 0\n")

	restarted, err := m.Restart(ctx, kernel.RestartRequest{KernelID: e.kid("k-labels"), SessionID: "sess-" + e.kid("k-labels")})
	if err != nil {
		t.Fatal(err)
	}
	check("restarted", restarted)

	// Without the request's labels, the image's: no inference port, no
	// corecount variables.
	plain := create(t, m, request(e.kid("k-nolabels")))
	for _, sp := range plain.ServicePorts {
		if sp.IsInference {
			t.Errorf("inference port without endpoint-ports: %+v", sp)
		}
	}
	wantOutput(t, run(t, m, e.kid("k-nolabels"), "r1", runnerclient.ModeQuery, "echo ${OMP_NUM_THREADS:-unset} $N_GPUS"), 0, "unset 0\n")

	for _, id := range []string{e.kid("k-labels"), e.kid("k-nolabels")} {
		if _, err := m.Destroy(ctx, id, "user-requested"); err != nil {
			t.Fatal(err)
		}
	}
}
