package pluginhost

import "strings"

// Policy decides which discovered plugins may run, from agent.toml's
// allow-compute-plugins and block-compute-plugins. Items are either our
// plugin names ("cuda") or upstream's entry-point module paths
// ("ai.backend.accelerator.cuda_open"), which upstream matches by whole
// dotted segments (plugin/entrypoint.py match_plugin_list): an item matches
// the module path itself or a package above it, so "ai.backend.accelerator"
// covers every accelerator while "ai.backend.acc" matches nothing.
type Policy struct {
	// Allow is nil when allow-compute-plugins is not set: everything not
	// blocked may run. An empty list allows nothing but the intrinsic plugin.
	Allow []string
	Block []string
}

// upstreamEntrypoints maps our plugin names to the module paths of the
// Python plugins they replace (the part of each entry point before ":").
func upstreamEntrypoints(name string) []string {
	switch name {
	case "cpu":
		return []string{"ai.backend.agent.docker.intrinsic"}
	case "cuda":
		return []string{"ai.backend.accelerator.cuda_open.plugin", "ai.backend.accelerator.cuda.plugin"}
	case "rocm":
		return []string{"ai.backend.accelerator.rocm.plugin"}
	case "tpu":
		return []string{"ai.backend.accelerator.tpu.plugin"}
	case "mock":
		return []string{"ai.backend.accelerator.mock.plugin"}
	}
	return nil
}

// IntrinsicPlugin provides the cpu and mem slots every kernel needs; like
// upstream's intrinsic plugins it is loaded whatever the lists say.
const IntrinsicPlugin = "cpu"

func matches(item, name string) bool {
	if item == name {
		return true
	}
	for _, ep := range upstreamEntrypoints(name) {
		if ep == item || strings.HasPrefix(ep, item+".") {
			return true
		}
	}
	return false
}

// Decide returns StateRunning when the plugin may start, or StateBlocked /
// StateNotAllowed with the reason.
func (p Policy) Decide(name string) (State, string) {
	if name == IntrinsicPlugin {
		return StateRunning, ""
	}
	for _, item := range p.Block {
		if matches(item, name) {
			return StateBlocked, "matched block-compute-plugins item " + quote(item)
		}
	}
	if p.Allow == nil {
		return StateRunning, ""
	}
	for _, item := range p.Allow {
		if matches(item, name) {
			return StateRunning, ""
		}
	}
	return StateNotAllowed, "not in allow-compute-plugins"
}

func quote(s string) string { return "\"" + s + "\"" }
