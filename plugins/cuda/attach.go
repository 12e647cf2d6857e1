package cuda

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
)

// nvidiaRuntime is the Docker runtime nvidia-container-toolkit installs.
const nvidiaRuntime = "nvidia"

// cdiGPUKind is the CDI device kind nvidia-ctk generates.
const cdiGPUKind = "nvidia.com/gpu"

// The first Docker with DeviceRequests is 19.03.
const (
	deviceRequestMinMajor = 19
	deviceRequestMinMinor = 3
)

// attachResolution is the method actually used, or why none is usable.
type attachResolution struct {
	method attachMethod
	// reason explains an automatic choice, or why there is none.
	reason string
	usable bool
}

// engineVersion reads "28.1.1", "19.03.5" or "podman 5.4.0"; ok is false for
// anything without major.minor.
func engineVersion(s string) (major, minor int, ok bool) {
	m := regexp.MustCompile(`(\d+)\.(\d+)`).FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	major, errMajor := strconv.Atoi(m[1])
	minor, errMinor := strconv.Atoi(m[2])
	if errMajor != nil || errMinor != nil {
		return 0, 0, false
	}
	return major, minor, true
}

// resolveAttach picks the method, following upstream cuda_open's device
// injector detection: an engine without the nvidia runtime but with an
// nvidia.com/gpu CDI spec uses CDI (Podman); Docker with the nvidia runtime
// uses DeviceRequests from 19.03 on and the legacy runtime before that.
func resolveAttach(configured attachMethod, agent sdk.AgentInfo, cdiSpecDirs []string) attachResolution {
	if configured != attachAuto {
		return attachResolution{method: configured, reason: "configured", usable: true}
	}
	hasNvidiaRuntime := slices.Contains(agent.DockerRuntimes, nvidiaRuntime)
	major, minor, versionOK := engineVersion(agent.DockerVersion)
	if hasNvidiaRuntime {
		if !versionOK {
			return attachResolution{reason: fmt.Sprintf("container engine version %q is not parsable", agent.DockerVersion)}
		}
		if major > deviceRequestMinMajor || (major == deviceRequestMinMajor && minor >= deviceRequestMinMinor) {
			return attachResolution{method: attachDeviceRequest, usable: true,
				reason: fmt.Sprintf("engine %s has the nvidia runtime and DeviceRequests", agent.DockerVersion)}
		}
		return attachResolution{method: attachRuntime, usable: true,
			reason: fmt.Sprintf("engine %s predates DeviceRequests (19.03); using the nvidia runtime", agent.DockerVersion)}
	}
	if dir, found := findCDISpec(cdiSpecDirs); found {
		return attachResolution{method: attachCDI, usable: true,
			reason: fmt.Sprintf("no nvidia runtime, but a %s CDI spec in %s", cdiGPUKind, dir)}
	}
	return attachResolution{reason: fmt.Sprintf(
		"the container engine has no %q runtime (runtimes %v) and no %s CDI spec is in %v",
		nvidiaRuntime, agent.DockerRuntimes, cdiGPUKind, cdiSpecDirs)}
}

// findCDISpec looks for a CDI spec file declaring the nvidia.com/gpu kind.
func findCDISpec(dirs []string) (string, bool) {
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if e.IsDir() || (ext != ".json" && ext != ".yaml" && ext != ".yml") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			if bytes.Contains(data, []byte(cdiGPUKind)) {
				return dir, true
			}
		}
	}
	return "", false
}

// nvidiaCapabilities are what upstream requests for DeviceRequests.
func nvidiaCapabilities() [][]string {
	return [][]string{{"utility", "compute", "video", "graphics", "display"}}
}

// attachSpec fills the parts of a container spec that make the GPUs with
// the given UUIDs (container order) visible.
func attachSpec(method attachMethod, uuids []string, spec *sdk.ContainerSpec) {
	visible := strings.Join(uuids, ",")
	if len(uuids) == 0 {
		// The legacy runtime still needs to be selected with nothing visible,
		// or an image's NVIDIA_VISIBLE_DEVICES=all would expose every GPU.
		if method == attachRuntime {
			spec.Runtime = nvidiaRuntime
			spec.Env["NVIDIA_VISIBLE_DEVICES"] = ""
		}
		return
	}
	// Always restate the UUIDs: images often carry NVIDIA_VISIBLE_DEVICES=all.
	spec.Env["NVIDIA_VISIBLE_DEVICES"] = visible
	ordinals := make([]string, len(uuids))
	for i := range uuids {
		ordinals[i] = strconv.Itoa(i)
	}
	// Inside the container the visible GPUs are renumbered from 0.
	spec.Env["CUDA_VISIBLE_DEVICES"] = strings.Join(ordinals, ",")
	switch method {
	case attachCDI:
		for _, uuid := range uuids {
			spec.CDIDevices = append(spec.CDIDevices, cdiGPUKind+"="+uuid)
		}
	case attachDeviceRequest:
		spec.DeviceRequests = append(spec.DeviceRequests, sdk.DeviceRequest{
			Driver:       nvidiaRuntime,
			DeviceIDs:    slices.Clone(uuids),
			Capabilities: nvidiaCapabilities(),
		})
	case attachRuntime:
		spec.Runtime = nvidiaRuntime
		spec.Env["NVIDIA_DRIVER_CAPABILITIES"] = "all"
	}
}
