package kernel

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/proto/sdk"
)

// ImageLabelEnvsCorecount lists, comma-separated, the variables that get
// the kernel's cpu core count (upstream's LabelName.ENVS_CORECOUNT).
const ImageLabelEnvsCorecount = "ai.backend.envs.corecount"

// withRequestLabels is the image's labels with the request's value for
// each label upstream's create_kernel reads from the request's
// image.labels (features, envs.corecount, endpoint-ports); a label the
// request lacks falls back to what docker image inspect reports.
func withRequestLabels(image, request map[string]string) map[string]string {
	out := maps.Clone(image)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range []string{ImageLabelFeatures, ImageLabelEnvsCorecount, ImageLabelEndpointPorts} {
		if v, ok := request[k]; ok {
			out[k] = v
		}
	}
	return out
}

// injectAgentEnv adds the variables upstream's create_kernel injects
// after the plugins' own (agent/agent.py, 26.8.1): the envs.corecount
// label's variables (unless already set) as the kernel's cpu core count,
// and the GPU_* variables of its first accelerator kind with attached
// devices: GPU_TYPE (the kind), GPU_MODEL_NAME (the first device's),
// GPU_CONFIG and TF_GPU_MEMORY_ALLOC (each device's memory as
// "idx:size", in upstream's BinarySize format and in MiB), and
// GPU_COUNT/N_GPUS, which are "0" without one.
func injectAgentEnv(env, labels map[string]string, allocation alloc.Allocation, attached map[string][]sdk.AttachedDevice) {
	if names := labels[ImageLabelEnvsCorecount]; names != "" {
		cores := 0
		for _, amount := range allocation["cpu"]["cpu"] {
			if amount.IsPositive() {
				cores++
			}
		}
		for _, k := range strings.Split(names, ",") {
			if _, ok := env[k]; !ok {
				env[k] = strconv.Itoa(cores)
			}
		}
	}
	// Upstream takes the first kind in its allocation order; ours are
	// sorted, and a kind without attached devices (a zero request) is
	// passed over.
	kinds := slices.Sorted(maps.Keys(attached))
	for _, kind := range kinds {
		devs := attached[kind]
		if kind == "cpu" || kind == "mem" || len(devs) == 0 {
			continue
		}
		mems := make([]string, 0, len(devs))
		mibs := make([]string, 0, len(devs))
		for i, d := range devs {
			mem, err := decimal.NewFromString(d.Data["mem"])
			if err != nil {
				mem = decimal.Zero
			}
			mem = mem.Truncate(0)
			mems = append(mems, strconv.Itoa(i)+":"+sdk.FormatBinarySize(mem))
			mibs = append(mibs, strconv.Itoa(i)+":"+mem.Div(decimal.NewFromInt(1<<20)).Floor().String())
		}
		env["GPU_TYPE"] = kind
		env["GPU_MODEL_NAME"] = devs[0].ModelName
		env["GPU_CONFIG"] = strings.Join(mems, ",")
		env["TF_GPU_MEMORY_ALLOC"] = strings.Join(mibs, ",")
		env["GPU_COUNT"] = strconv.Itoa(len(devs))
		env["N_GPUS"] = strconv.Itoa(len(devs))
		return
	}
	env["GPU_COUNT"] = "0"
	env["N_GPUS"] = "0"
}
