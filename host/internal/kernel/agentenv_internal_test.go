package kernel

import (
	"reflect"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/proto/sdk"
)

// TestInjectAgentEnv pins upstream's create_kernel (agent/agent.py,
// 26.8.1): envs.corecount variables and the GPU_* variables from the
// attached devices of cuda_open's get_attached_devices
// (accelerator/cuda_open/plugin.py: model_name, data.mem in bytes).
func TestInjectAgentEnv(t *testing.T) {
	one := decimal.NewFromInt(1)
	cpus := func(n int) alloc.Allocation {
		per := map[string]decimal.Decimal{}
		for i := range n {
			per[string(rune('0'+i))] = one
		}
		return alloc.Allocation{"cpu": {"cpu": per}, "mem": {"mem": {"root": decimal.NewFromInt(1 << 30)}}}
	}
	a100 := func(id, mem string) sdk.AttachedDevice {
		return sdk.AttachedDevice{DeviceID: id, ModelName: "NVIDIA A100-SXM4-40GB", Data: map[string]string{"mem": mem, "smp": "108"}}
	}
	cases := []struct {
		description string
		env         map[string]string
		labels      map[string]string
		allocation  alloc.Allocation
		attached    map[string][]sdk.AttachedDevice
		want        map[string]string
	}{
		{description: "no accelerator: GPU_COUNT and N_GPUS are 0, nothing else",
			env: map[string]string{}, allocation: cpus(2),
			want: map[string]string{"GPU_COUNT": "0", "N_GPUS": "0"}},
		{description: "corecount variables get the allocated core count",
			env: map[string]string{}, labels: map[string]string{ImageLabelEnvsCorecount: "OMP_NUM_THREADS,MKL_NUM_THREADS"}, allocation: cpus(3),
			want: map[string]string{"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "GPU_COUNT": "0", "N_GPUS": "0"}},
		{description: "a corecount variable the environ sets already is kept",
			env: map[string]string{"OMP_NUM_THREADS": "1"}, labels: map[string]string{ImageLabelEnvsCorecount: "OMP_NUM_THREADS,NPROC"}, allocation: cpus(4),
			want: map[string]string{"OMP_NUM_THREADS": "1", "NPROC": "4", "GPU_COUNT": "0", "N_GPUS": "0"}},
		{description: "two whole GPUs: type, first model, memory per local index",
			env: map[string]string{}, allocation: cpus(1),
			attached: map[string][]sdk.AttachedDevice{"cuda": {a100("3", "42949672960"), a100("5", "42949672960")}},
			want: map[string]string{"GPU_TYPE": "cuda", "GPU_MODEL_NAME": "NVIDIA A100-SXM4-40GB", "GPU_CONFIG": "0:40g,1:40g",
				"TF_GPU_MEMORY_ALLOC": "0:40960,1:40960", "GPU_COUNT": "2", "N_GPUS": "2"}},
		{description: "a fractional share's memory: BinarySize with two decimals, MiB floored",
			env: map[string]string{}, allocation: cpus(1),
			attached: map[string][]sdk.AttachedDevice{"cuda": {a100("0", "1610612736.5")}},
			want: map[string]string{"GPU_TYPE": "cuda", "GPU_MODEL_NAME": "NVIDIA A100-SXM4-40GB", "GPU_CONFIG": "0:1.5g",
				"TF_GPU_MEMORY_ALLOC": "0:1536", "GPU_COUNT": "1", "N_GPUS": "1"}},
		{description: "a device without mem reports 0",
			env: map[string]string{}, allocation: cpus(1),
			attached: map[string][]sdk.AttachedDevice{"tpu": {{DeviceID: "0", ModelName: "v4"}}},
			want: map[string]string{"GPU_TYPE": "tpu", "GPU_MODEL_NAME": "v4", "GPU_CONFIG": "0:0",
				"TF_GPU_MEMORY_ALLOC": "0:0", "GPU_COUNT": "1", "N_GPUS": "1"}},
		{description: "only the first accelerator kind is described; the request's GPU_TYPE is overwritten",
			env: map[string]string{"GPU_TYPE": "mine"}, allocation: cpus(1),
			attached: map[string][]sdk.AttachedDevice{"rocm": {{DeviceID: "0", ModelName: "MI250", Data: map[string]string{"mem": "1024"}}},
				"cuda": {a100("0", "1048576")}, "cpu": {{DeviceID: "0"}}},
			want: map[string]string{"GPU_TYPE": "cuda", "GPU_MODEL_NAME": "NVIDIA A100-SXM4-40GB", "GPU_CONFIG": "0:1m",
				"TF_GPU_MEMORY_ALLOC": "0:1", "GPU_COUNT": "1", "N_GPUS": "1"}},
		{description: "a kind with no attached devices is passed over",
			env: map[string]string{}, allocation: cpus(1),
			attached: map[string][]sdk.AttachedDevice{"cuda": {}},
			want:     map[string]string{"GPU_COUNT": "0", "N_GPUS": "0"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			injectAgentEnv(tc.env, tc.labels, tc.allocation, tc.attached)
			if !reflect.DeepEqual(tc.env, tc.want) {
				t.Errorf("got %v\nwant %v", tc.env, tc.want)
			}
		})
	}
}

// TestWithRequestLabels: the request's image.labels win for the labels
// upstream's create_kernel reads from it (agent/agent.py, 26.8.1:
// features, envs.corecount, endpoint-ports); the rest, and any the
// request lacks, come from docker image inspect.
func TestWithRequestLabels(t *testing.T) {
	image := map[string]string{ImageLabelFeatures: "batch", ImageLabelRuntimeType: "python", ImageLabelEndpointPorts: "api"}
	cases := []struct {
		description string
		image       map[string]string
		request     map[string]string
		want        map[string]string
	}{
		{description: "no request labels: the image's",
			image: image, want: image},
		{description: "the request's features, corecount and endpoint-ports win",
			image: image, request: map[string]string{ImageLabelFeatures: "uid-match", ImageLabelEnvsCorecount: "NPROC", ImageLabelEndpointPorts: ""},
			want: map[string]string{ImageLabelFeatures: "uid-match", ImageLabelRuntimeType: "python", ImageLabelEnvsCorecount: "NPROC", ImageLabelEndpointPorts: ""}},
		{description: "other request labels do not replace the image's",
			image: image, request: map[string]string{ImageLabelRuntimeType: "app", ImageLabelServicePorts: "x:http:8080"},
			want: image},
		{description: "an image without labels takes the request's",
			request: map[string]string{ImageLabelEnvsCorecount: "NPROC"},
			want:    map[string]string{ImageLabelEnvsCorecount: "NPROC"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			before := map[string]string{}
			for k, v := range tc.image {
				before[k] = v
			}
			if got := withRequestLabels(tc.image, tc.request); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
			if len(tc.image) > 0 && !reflect.DeepEqual(tc.image, before) {
				t.Errorf("the image's labels changed: %v", tc.image)
			}
		})
	}
}
