package config

import (
	"bytes"
	"fmt"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// MaskedSecret replaces a non-empty secret in EffectiveTOML.
const MaskedSecret = "********"

// EffectiveTOML prints the effective config (defaults, file and environment
// combined) as agent.toml, with the etcd and Redis passwords masked; this is
// what `baiagent config check` shows. Keys are sorted.
func (c *Config) EffectiveTOML() ([]byte, error) {
	return c.encode(true)
}

// EffectiveTOMLWithSecrets is EffectiveTOML with the secrets in clear. Loading
// its output yields the same Config.
func (c *Config) EffectiveTOMLWithSecrets() ([]byte, error) {
	return c.encode(false)
}

func (c *Config) encode(maskSecrets bool) ([]byte, error) {
	secret := func(value string) string {
		if maskSecrets && value != "" {
			return MaskedSecret
		}
		return value
	}
	seconds := func(d time.Duration) float64 { return d.Seconds() }

	etcd := map[string]any{
		"namespace": c.Etcd.Namespace,
		"user":      c.Etcd.User,
		"password":  secret(c.Etcd.Password),
		"embedded":  c.Etcd.Embedded,
	}
	if len(c.Etcd.Addrs) == 1 {
		etcd["addr"] = c.Etcd.Addrs[0].String()
	} else {
		addrs := make([]string, len(c.Etcd.Addrs))
		for i, a := range c.Etcd.Addrs {
			addrs[i] = a.String()
		}
		etcd["addr"] = addrs
	}
	if c.Etcd.DataDir != "" {
		etcd["data-dir"] = c.Etcd.DataDir
	}
	if c.Etcd.EmbeddedExecutable != "" {
		etcd["embedded-executable"] = c.Etcd.EmbeddedExecutable
	}

	a := &c.Agent
	agent := map[string]any{
		"backend":                            string(a.Backend),
		"rpc-listen-addr":                    a.RPCListenAddr.String(),
		"internal-addr":                      a.InternalAddr.String(),
		"ssl-enabled":                        a.SSLEnabled,
		"ssl-cert":                           a.SSLCert,
		"ssl-key":                            a.SSLKey,
		"rpc-auth-manager-public-key":        a.RPCAuthManagerPublicKey,
		"rpc-auth-agent-keypair":             a.RPCAuthAgentKeypair,
		"ipc-base-path":                      a.IPCBasePath,
		"var-base-path":                      a.VarBasePath,
		"mount-path":                         a.MountPath,
		"abuse-report-path":                  a.AbuseReportPath,
		"pid-file":                           a.PIDFile,
		"image-commit-path":                  a.ImageCommitPath,
		"id":                                 a.ID,
		"region":                             a.Region,
		"instance-type":                      a.InstanceType,
		"public-host":                        a.PublicHost,
		"initial-resource-group-name":        a.InitialResourceGroupName,
		"scaling-group-type":                 string(a.ScalingGroupType),
		"skip-manager-detection":             a.SkipManagerDetection,
		"agent-sock-port":                    a.AgentSockPort,
		"kernel-creation-concurrency":        a.KernelCreationConcurrency,
		"force-terminate-abusing-containers": a.ForceTerminateAbusingContainers,
		"sync-container-lifecycles": map[string]any{
			"enabled":  a.SyncContainerLifecycles.Enabled,
			"interval": seconds(a.SyncContainerLifecycles.Interval),
		},
		"utilization-metric": map[string]any{
			"node":      metricTable(a.UtilizationMetric.Node),
			"container": metricTable(a.UtilizationMetric.Container),
			"process":   metricTable(a.UtilizationMetric.Process),
		},
		"plugin-dirs":          nonNil(a.PluginDirs),
		"plugin-start-timeout": a.PluginStartTimeout.String(),
		"plugin-runtime-dir":   a.PluginRuntimeDir,
		"kernel-runner-path":   a.KernelRunnerPath,
	}
	if a.AdvertisedRPCAddr != nil {
		agent["advertised-rpc-addr"] = a.AdvertisedRPCAddr.String()
	}
	// Absent and empty differ for the allow/block lists, so nil stays absent.
	if a.AllowComputePlugins != nil {
		agent["allow-compute-plugins"] = a.AllowComputePlugins
	}
	if a.BlockComputePlugins != nil {
		agent["block-compute-plugins"] = a.BlockComputePlugins
	}
	if a.PluginChecksums != nil {
		agent["plugin-checksums"] = a.PluginChecksums
	}

	ct := &c.Container
	container := map[string]any{
		"bind-host":               ct.BindHost,
		"advertised-host":         ct.AdvertisedHost,
		"kernel-uid":              ct.KernelUID,
		"kernel-gid":              ct.KernelGID,
		"port-range":              []int{ct.PortRange.Min, ct.PortRange.Max},
		"port-reuse-cooldown-sec": int(ct.PortReuseCooldown / time.Second),
		"stats-type":              string(ct.StatsType),
		"sandbox-type":            string(ct.SandboxType),
		"scratch-type":            string(ct.ScratchType),
		"scratch-root":            ct.ScratchRoot,
		"scratch-size":            ct.ScratchSize.String(),
	}
	if ct.KrunnerVolumes != nil {
		container["krunner-volumes"] = ct.KrunnerVolumes
	}

	r := &c.Resource
	resource := map[string]any{
		"reserved-cpu":      r.ReservedCPU,
		"reserved-mem":      r.ReservedMem.String(),
		"reserved-disk":     r.ReservedDisk.String(),
		"allocation-mode":   string(r.AllocationMode),
		"memory-align-size": r.MemoryAlignSize.String(),
		"allocation-order":  nonNil(r.AllocationOrder),
		"affinity-policy":   string(r.AffinityPolicy),
	}
	if r.Allocations != nil {
		devices := make(map[string]string, len(r.Allocations.Devices))
		for slot, amount := range r.Allocations.Devices {
			devices[slot] = amount.String()
		}
		resource["allocations"] = map[string]any{
			"cpu":     r.Allocations.CPU,
			"mem":     r.Allocations.Mem.String(),
			"devices": devices,
		}
	}

	dbg := &c.Debug
	debug := map[string]any{
		"enabled":                 dbg.Enabled,
		"skip-container-deletion": dbg.SkipContainerDeletion,
		"heartbeat-interval":      seconds(dbg.HeartbeatInterval),
		"log-stats":               dbg.LogStats,
		"log-kernel-config":       dbg.LogKernelConfig,
		"log-alloc-map":           dbg.LogAllocMap,
		"log-events":              dbg.LogEvents,
		"log-heartbeats":          dbg.LogHeartbeats,
		"log-docker-events":       dbg.LogDockerEvents,
	}

	watcher := map[string]any{
		"ssl-enabled":          c.Watcher.SSLEnabled,
		"ssl-cert":             c.Watcher.SSLCert,
		"ssl-key":              c.Watcher.SSLKey,
		"target-service":       c.Watcher.TargetService,
		"soft-reset-available": c.Watcher.SoftResetAvailable,
	}
	// Written only when configured: that is what makes the agent publish
	// watcher_port to etcd.
	if c.Watcher.ServiceAddrConfigured {
		watcher["service-addr"] = c.Watcher.ServiceAddr.String()
	}

	doc := map[string]any{
		"etcd":      etcd,
		"agent":     agent,
		"container": container,
		"resource":  resource,
		"debug":     debug,
		"container-logs": map[string]any{
			"max-length": c.ContainerLogs.MaxLength.String(),
			"chunk-size": c.ContainerLogs.ChunkSize.String(),
		},
		"api": map[string]any{"pull-timeout": seconds(c.API.PullTimeout), "push-timeout": seconds(c.API.PushTimeout)},
		"logging": map[string]any{
			"level":  string(c.Logging.Level),
			"format": string(c.Logging.Format),
		},
		"watcher": watcher,
	}
	if c.Redis != nil {
		redis := encodeRedisTarget(c.Redis.RedisTarget, secret)
		redis["db"] = c.Redis.DB
		if len(c.Redis.Overrides) > 0 {
			overrides := map[string]any{}
			for role, target := range c.Redis.Overrides {
				overrides[role] = encodeRedisTarget(target, secret)
			}
			redis["override-configs"] = overrides
		}
		doc["redis"] = redis
	}
	if len(c.Plugins) > 0 {
		doc["plugins"] = c.Plugins
	}

	var buf bytes.Buffer
	encoder := toml.NewEncoder(&buf)
	encoder.SetIndentTables(false)
	if err := encoder.Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding effective config: %w", err)
	}
	return buf.Bytes(), nil
}

func metricTable(m MetricCollectionConfig) map[string]any {
	return map[string]any{"enable": m.Enable, "interval": m.Interval.Seconds()}
}

// nonNil keeps an empty list as [] in the output rather than dropping it.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

func encodeRedisTarget(t RedisTarget, secret func(string) string) map[string]any {
	out := map[string]any{
		"password":        secret(t.Password),
		"use-tls":         t.UseTLS,
		"tls-skip-verify": t.TLSSkipVerify,
	}
	if t.Addr != (HostPort{}) {
		out["addr"] = t.Addr.String()
	}
	if len(t.Sentinel) > 0 {
		sentinel := make([]string, len(t.Sentinel))
		for i, hp := range t.Sentinel {
			sentinel[i] = hp.String()
		}
		out["sentinel"] = sentinel
		out["service-name"] = t.ServiceName
	}
	if t.SentinelPassword != nil {
		out["sentinel-password"] = secret(*t.SentinelPassword)
	}
	if t.RequestTimeout > 0 {
		out["request-timeout"] = t.RequestTimeout.Milliseconds()
	}
	return out
}
