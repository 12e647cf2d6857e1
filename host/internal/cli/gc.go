package cli

import (
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
)

// serverGCPercent is the agent's GOGC when the environment sets none. The
// Go runtime lets the heap grow to (100+GOGC)% of what the last collection
// found live, and the agent's collections happen during its bursts (the
// lifecycle sync decoding `docker ps`, a statistics round), so with the
// default 100 an agent with 200 idle kernels kept 18 MB of heap for 7 MB
// live. At 50 it keeps about 5 MiB less there for 0.06 % of a core more
// (issue 20, BENCHMARKS.md); GOGC in the environment (or GOMEMLIMIT
// alongside it) still decides when an operator sets it.
const serverGCPercent = 50

// applyGCPercent sets serverGCPercent unless env sets GOGC, and says which.
func applyGCPercent(env config.Env, log zerolog.Logger) {
	if v, set := env.Value("GOGC"); set {
		log.Info().Str("GOGC", v).Msg("garbage collector tuned by the environment")
		return
	}
	debug.SetGCPercent(serverGCPercent)
	log.Debug().Int("gc_percent", serverGCPercent).Msg("garbage collector percent set (GOGC unset)")
}
