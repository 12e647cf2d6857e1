package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// ModelMountPath is where kernel run --type inference mounts --model-dir.
const ModelMountPath = "/models"

// runInference creates an inference session's kernel as the manager does:
// the model folder as a mount with usage_mode "model" and the model
// definition inlined in internal_data; the agent starts the model
// services. It prints the inference ports and leaves the kernel running.
func (f *kernelFlags) runInference(cmd *cobra.Command) error {
	if f.modelDef == "" || f.modelDir == "" {
		return errors.New("--type inference needs --model-def FILE and --model-dir DIR")
	}
	def, err := readModelDefinition(f.modelDef)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(f.modelDir)
	if err != nil {
		return fmt.Errorf("--model-dir: %w", err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--model-dir %s: not a directory", f.modelDir)
	}
	kernelID, sessionID, cfg, clusterInfo, err := f.newKernel()
	if err != nil {
		return err
	}
	cfg["mounts"] = []any{map[string]any{"name": filepath.Base(dir), "vfid": "", "vfsubpath": ".", "host_path": dir,
		"kernel_path": ModelMountPath, "mount_perm": "ro", "usage_mode": "model"}}
	cfg["internal_data"] = map[string]any{"model_definition": def}
	return withClient(cmd.Context(), &f.rpcFlags, func(ctx context.Context, c *callosum.Client) error {
		result, err := c.Invoke(ctx, "create_kernels",
			[]any{sessionID, []any{kernelID}, []any{cfg}, clusterInfo, map[string]any{}}, nil)
		if err != nil {
			return fmt.Errorf("create_kernels: %w", err)
		}
		printInferencePorts(cmd, result)
		fmt.Fprintf(cmd.ErrOrStderr(), "kernel %s (session %s) left running; its model services are starting\n", kernelID, sessionID)
		return nil
	})
}

// readModelDefinition reads a model definition (YAML, or JSON) into plain
// values the RPC encoder takes: integral numbers as ints.
func readModelDefinition(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--model-def: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("--model-def %s: %w", path, err)
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, fmt.Errorf("--model-def %s: %w", path, err)
	}
	return intsOf(v), nil
}

func intsOf(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, item := range x {
			x[k] = intsOf(item)
		}
	case []any:
		for i, item := range x {
			x[i] = intsOf(item)
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	}
	return v
}

// printInferencePorts lists create_kernels' inference service ports.
func printInferencePorts(cmd *cobra.Command, result any) {
	list, _ := result.([]any)
	for _, item := range list {
		res, _ := item.(wiremsg.Map)
		ports, _ := res["service_ports"].([]any)
		for _, p := range ports {
			sp, _ := p.(wiremsg.Map)
			if inf, _ := sp["is_inference"].(bool); !inf {
				continue
			}
			fmt.Fprintf(cmd.OutOrStdout(), "inference port %v: container %v -> %v:%v\n", sp["name"], sp["container_ports"], res["kernel_host"], sp["host_ports"])
		}
	}
}
