package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/heartbeat"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/images/registrytest"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Each heartbeat rescans the local images: installed_image:{agent_id}
// carries each image's own architecture (InstalledImageInfo,
// common/data/image/types.py), and an image gone since the last scan is
// reported with agent_installed_images_remove (scan_images_periodically,
// agent/agent.py), both read back as the 26.8 manager reads them.
func TestHeartbeatImages(t *testing.T) {
	docker := kerneltest.Docker(t)
	srv := redistest.Start(t, false)
	ctx := context.Background()
	a := New(loadSample(t, "agent.dev.toml"), zerolog.Nop())
	a.plugins = pluginhost.New(PluginOptions(a.cfg, zerolog.Nop()))
	bus, err := events.New(ctx, events.Options{
		AgentID: a.cfg.Agent.ID, Redis: &events.RedisOptions{Addr: srv.Addr}, Encoding: events.EncodingArgs,
		QueueDir: t.TempDir(), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	a.bus = bus
	svc := images.New(docker, images.Options{Logger: zerolog.Nop()})
	defer svc.Close()
	reader := managertest.NewReader(t, srv.Addr)
	imageDB := srv.Client(t, events.ImageDB)
	opts := heartbeat.Options{
		AgentID: a.cfg.Agent.ID, Bus: bus, Images: imageDB,
		Source: heartbeat.SourceFunc(func(ctx context.Context) (heartbeat.Info, error) {
			info := a.heartbeatInfo("")
			info.Images = a.heartbeatImages(ctx, svc)
			return info, nil
		}),
	}
	prefix := fmt.Sprintf("baiagent-test/hb-%d", rand.Uint32())
	spec := map[string]string{"ai.backend.kernelspec": "1"}
	arm, amd := prefix+"-arm:1", prefix+"-amd:1"
	armID := registrytest.LoadImage(t, docker, arm, "arm64", spec)
	amdID := registrytest.LoadImage(t, docker, amd, "amd64", spec)

	installed := func() map[string]map[string]string {
		t.Helper()
		raw, err := imageDB.Get(ctx, heartbeat.InstalledImagesKey(a.cfg.Agent.ID)).Result()
		if err != nil {
			t.Fatal(err)
		}
		var list []map[string]string
		if err := json.Unmarshal([]byte(raw), &list); err != nil {
			t.Fatalf("installed_image is not a JSON list: %v", err)
		}
		out := map[string]map[string]string{}
		for _, img := range list {
			out[img["canonical"]] = img
		}
		return out
	}
	if err := heartbeat.Beat(ctx, opts); err != nil {
		t.Fatal(err)
	}
	got := installed()
	cases := []struct {
		description string
		canonical   string
		want        map[string]string
	}{
		{"an arm64 image is aarch64 whatever the host", arm, map[string]string{"canonical": arm, "digest": armID, "architecture": "aarch64"}},
		{"an amd64 image is x86_64", amd, map[string]string{"canonical": amd, "digest": amdID, "architecture": "x86_64"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if fmt.Sprint(got[tc.canonical]) != fmt.Sprint(tc.want) {
				t.Errorf("installed_image entry %v, want %v", got[tc.canonical], tc.want)
			}
		})
	}

	registrytest.RemoveImage(t, docker, arm)
	if err := heartbeat.Beat(ctx, opts); err != nil {
		t.Fatal(err)
	}
	ev := reader.WaitStream(5*time.Second, func(ev managertest.Event) bool {
		if ev.Name != "agent_installed_images_remove" {
			return false
		}
		_, ok := ev.Args[0].(wiremsg.Map)[arm]
		return ok
	})
	entry := ev.Args[0].(wiremsg.Map)[arm].(wiremsg.Map)
	if entry["canonical"] != arm || entry["digest"] != armID || len(entry) != 2 {
		t.Errorf("removed image entry %v, want canonical %s and digest %s", entry, arm, armID)
	}
	if _, still := installed()[arm]; still {
		t.Errorf("installed_image still lists %s", arm)
	}
	for _, ev := range reader.Stream() {
		if ev.Name == "agent_installed_images_remove" {
			if _, ok := ev.Args[0].(wiremsg.Map)[amd]; ok {
				t.Errorf("%s, still present, reported removed", amd)
			}
		}
	}
}
