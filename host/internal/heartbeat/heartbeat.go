// Package heartbeat builds the agent_heartbeat event (AgentInfo, spec §3)
// from what the agent knows, sends it every heartbeat-interval, and records
// the installed images under installed_image:{agent_id} in Redis DB 3, as
// the Python agent's heartbeat() does.
package heartbeat

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// DefaultInterval is debug.heartbeat-interval's default.
const DefaultInterval = 20 * time.Second

// Slot is one resource slot the agent offers.
type Slot struct {
	Name string // e.g. "cpu", "mem", "cuda.device"
	// Unit is the SlotTypes value: "count", "bytes", "unique" or "unified".
	Unit      string
	Available decimal.Decimal
}

// ComputePlugin is one entry of compute_plugins: its version and the
// plugin's extra_info(), merged into one dict as upstream does.
type ComputePlugin struct {
	Key     string
	Version string
	Extra   wiremsg.Dict
}

// Image is one local image: (canonical, digest) in the heartbeat, and the
// full entry in installed_image:{agent_id}.
type Image struct {
	Canonical    string
	Digest       string
	Architecture string
}

// Info is what the agent reports in every heartbeat. Slots, plugins and
// images keep the caller's order, which the manager sees.
type Info struct {
	IP string
	// Region "" is sent as "local", upstream's default: the manager's
	// agents.region is NOT NULL.
	Region       string
	ScalingGroup string // "" is sent as None
	// RPCAddr is advertised-rpc-addr or rpc-listen-addr, "host:port";
	// addr becomes "tcp://" + RPCAddr.
	RPCAddr string
	// PublicKey is the agent's z85 CURVE public key, nil without RPC auth.
	PublicKey []byte
	// PublicHost "" is sent as IP: upstream's chain ends at the bind
	// host, which falls back to the RPC host.
	PublicHost                 string
	Slots                      []Slot
	Version                    string
	ComputePlugins             []ComputePlugin
	Architecture               string // "x86_64" or "aarch64"
	AutoTerminateAbusingKernel bool
	Images                     []Image
}

// Source gives the current Info; the agent implements it.
type Source interface {
	HeartbeatInfo(ctx context.Context) (Info, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) (Info, error)

// HeartbeatInfo calls f.
func (f SourceFunc) HeartbeatInfo(ctx context.Context) (Info, error) { return f(ctx) }

func noneIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Event builds agent_heartbeat in both encodings: AgentInfo.model_dump() of
// 26.8.x (ResourceSlot pickled as ext 8, SlotName keys as ext 9, SlotTypes
// as ext 6, images as zlib(msgpack([(canonical, digest), ...]))) and
// main's JSON (slot entries, no images).
func Event(info Info) (events.AgentHeartbeat, error) {
	images, err := compressedImages(info.Images)
	if err != nil {
		return events.AgentHeartbeat{}, err
	}
	var publicKey any
	if info.PublicKey != nil {
		publicKey = info.PublicKey
	}
	slots := make(wiremsg.ResourceSlot, 0, len(info.Slots))
	slotEntries := make([]any, 0, len(info.Slots))
	unitsArgs := wiremsg.Dict{}
	unitsBody := wiremsg.Dict{}
	for _, s := range info.Slots {
		slots = append(slots, wiremsg.Slot{Name: s.Name, Amount: s.Available})
		slotEntries = append(slotEntries, wiremsg.Dict{{Key: "resource_type", Value: s.Name}, {Key: "quantity", Value: s.Available.String()}})
		unitsArgs = append(unitsArgs, wiremsg.KV{Key: wiremsg.SlotName(s.Name), Value: wiremsg.SlotTypes(s.Unit)})
		unitsBody = append(unitsBody, wiremsg.KV{Key: s.Name, Value: s.Unit})
	}
	plugins := wiremsg.Dict{}
	for _, p := range info.ComputePlugins {
		entry := wiremsg.Dict{{Key: "version", Value: p.Version}}
		for _, kv := range p.Extra {
			if k, ok := kv.Key.(string); ok && k == "version" {
				continue // {"version": ..., **extra_info()}: extra wins in Python
			}
			entry = append(entry, kv)
		}
		if v, ok := p.Extra.Get("version"); ok {
			entry[0].Value = v
		}
		plugins = append(plugins, wiremsg.KV{Key: p.Key, Value: entry})
	}
	if info.Region == "" {
		info.Region = config.DefaultRegion
	}
	if info.PublicHost == "" {
		info.PublicHost = info.IP
	}
	head := wiremsg.Dict{
		{Key: "ip", Value: info.IP},
		{Key: "region", Value: info.Region},
		{Key: "scaling_group", Value: noneIfEmpty(info.ScalingGroup)},
		{Key: "addr", Value: "tcp://" + info.RPCAddr},
	}
	argsInfo := append(append(wiremsg.Dict{}, head...),
		wiremsg.KV{Key: "public_key", Value: publicKey},
		wiremsg.KV{Key: "public_host", Value: info.PublicHost},
		wiremsg.KV{Key: "available_resource_slots", Value: slots},
		wiremsg.KV{Key: "slot_key_and_units", Value: unitsArgs},
		wiremsg.KV{Key: "version", Value: info.Version},
		wiremsg.KV{Key: "compute_plugins", Value: plugins},
		wiremsg.KV{Key: "images", Value: images},
		wiremsg.KV{Key: "architecture", Value: info.Architecture},
		wiremsg.KV{Key: "auto_terminate_abusing_kernel", Value: info.AutoTerminateAbusingKernel},
		wiremsg.KV{Key: "images_opts", Value: wiremsg.Dict{{Key: "compression", Value: "zlib"}}},
	)
	var publicKeyJSON any
	if info.PublicKey != nil {
		publicKeyJSON = string(info.PublicKey)
	}
	bodyInfo := append(append(wiremsg.Dict{}, head...),
		wiremsg.KV{Key: "public_key", Value: publicKeyJSON},
		wiremsg.KV{Key: "public_host", Value: info.PublicHost},
		wiremsg.KV{Key: "available_resource_slots", Value: slotEntries},
		wiremsg.KV{Key: "slot_key_and_units", Value: unitsBody},
		wiremsg.KV{Key: "version", Value: info.Version},
		wiremsg.KV{Key: "compute_plugins", Value: plugins},
		wiremsg.KV{Key: "architecture", Value: info.Architecture},
		wiremsg.KV{Key: "auto_terminate_abusing_kernel", Value: info.AutoTerminateAbusingKernel},
	)
	return events.AgentHeartbeat{ArgsInfo: argsInfo, BodyInfo: bodyInfo}, nil
}

// compressedImages is zlib.compress(msgpack.packb([(canonical, digest), ...])).
func compressedImages(images []Image) ([]byte, error) {
	list := make([]any, len(images))
	for i, img := range images {
		list[i] = wiremsg.Tuple{img.Canonical, img.Digest}
	}
	packed, err := wiremsg.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: pack images: %w", err)
	}
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	if _, err := zw.Write(packed); err != nil {
		return nil, fmt.Errorf("heartbeat: compress images: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("heartbeat: compress images: %w", err)
	}
	return buf.Bytes(), nil
}

// InstalledImagesKey is the DB 3 key the manager reads the agent's images from.
func InstalledImagesKey(agentID string) string { return "installed_image:" + agentID }

// installedImagesJSON is [InstalledImageInfo.model_dump(), ...] as orjson writes it.
func installedImagesJSON(images []Image) ([]byte, error) {
	type installedImage struct {
		Canonical    string `json:"canonical"`
		Digest       string `json:"digest"`
		Architecture string `json:"architecture"`
	}
	list := make([]installedImage, len(images))
	for i, img := range images {
		list[i] = installedImage(img)
	}
	return json.Marshal(list)
}

// Emitter is the part of the event bus the loop needs.
type Emitter interface {
	Emit(ctx context.Context, ev events.Event) error
}

// Options configures Run.
type Options struct {
	AgentID  string
	Source   Source
	Bus      Emitter
	Interval time.Duration // DefaultInterval if 0
	// Images is a client of Redis DB 3 (events.NewRedisClient(opts,
	// events.ImageDB)); nil skips installed_image, as without Redis.
	Images *redis.Client
	Logger zerolog.Logger
}

// Beat sends one heartbeat and then records the installed images. Upstream
// skips the SET when the agent has no images.
func Beat(ctx context.Context, opts Options) error {
	info, err := opts.Source.HeartbeatInfo(ctx)
	if err != nil {
		return fmt.Errorf("heartbeat: gather info: %w", err)
	}
	ev, err := Event(info)
	if err != nil {
		return err
	}
	if err := opts.Bus.Emit(ctx, ev); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if opts.Images == nil || len(info.Images) == 0 {
		return nil
	}
	value, err := installedImagesJSON(info.Images)
	if err != nil {
		return fmt.Errorf("heartbeat: encode installed images: %w", err)
	}
	if err := opts.Images.Set(ctx, InstalledImagesKey(opts.AgentID), value, 0).Err(); err != nil {
		return fmt.Errorf("heartbeat: set %s: %w", InstalledImagesKey(opts.AgentID), err)
	}
	return nil
}

// Run sends a heartbeat at once and then every Interval until ctx ends. A
// failed beat is logged and the loop goes on, as upstream's timer does.
func Run(ctx context.Context, opts Options) error {
	if opts.Source == nil || opts.Bus == nil {
		return errors.New("heartbeat: source and bus are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	ticker := time.NewTicker(opts.Interval)
	defer ticker.Stop()
	for {
		if err := Beat(ctx, opts); err != nil && ctx.Err() == nil {
			level := zerolog.WarnLevel
			if errors.Is(err, events.ErrDropped) {
				level = zerolog.DebugLevel // the bus already said Redis is down
			}
			opts.Logger.WithLevel(level).Err(err).Msg("heartbeat failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}
