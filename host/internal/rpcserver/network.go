package rpcserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// decodeClusterHosts reads cluster_ssh_port_mapping: {hostname: (host,
// port)} (ClusterSSHPortMapping), sorted by hostname; None is no entries.
func decodeClusterHosts(path string, v any) ([]sessionapi.ClusterHost, error) {
	if v == nil {
		return nil, nil
	}
	m, err := plainMap(path, v)
	if err != nil {
		return nil, err
	}
	hosts := make([]sessionapi.ClusterHost, 0, len(m))
	for name, addr := range m {
		at := fmt.Sprintf("%s[%q]", path, name)
		pair, ok := addr.([]any)
		if !ok || len(pair) != 2 {
			return nil, argError("TypeError", at, "must be a (host, port) pair, not %s", wiremsg.PyTypeName(addr))
		}
		host, ok := pair[0].(string)
		if !ok || host == "" {
			return nil, argError("TypeError", at+"[0]", "must be a non-empty str host, not %s", wiremsg.PyTypeName(pair[0]))
		}
		port, err := intValue(at+"[1]", pair[1])
		if err != nil {
			return nil, err
		}
		if port < 1 || port > 65535 {
			return nil, argError("ValueError", at+"[1]", "port %d is out of range", port)
		}
		if name == "" {
			return nil, argError("ValueError", path, "an empty hostname")
		}
		hosts = append(hosts, sessionapi.ClusterHost{Hostname: name, Host: host, Port: int(port)})
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Hostname < hosts[j].Hostname })
	return hosts, nil
}

// clusterInfoJSON is cluster_info as upstream's dump_json writes it to
// cluster.json.
func clusterInfoJSON(ci sessionapi.ClusterInfo) ([]byte, error) {
	doc := map[string]any{
		"mode": ci.Mode, "size": ci.Size, "replicas": ci.Replicas,
		"network_config": jsonValue(ci.NetworkConfig), "ssh_keypair": nil, "cluster_ssh_port_mapping": nil,
	}
	if ci.Replicas == nil {
		doc["replicas"] = map[string]int{}
	}
	if kp := ci.SSHKeypair; kp != nil {
		doc["ssh_keypair"] = map[string]string{"public_key": kp.PublicKey, "private_key": kp.PrivateKey}
	}
	if ci.Hosts != nil {
		mapping := make(map[string][]any, len(ci.Hosts))
		for _, h := range ci.Hosts {
			mapping[h.Hostname] = []any{h.Host, h.Port}
		}
		doc["cluster_ssh_port_mapping"] = mapping
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("cluster.json: %w", err)
	}
	return raw, nil
}

var errNotJSON = errors.New("not representable in JSON")

// jsonValue turns a decoded wire value into one encoding/json takes;
// what JSON cannot hold becomes its Python-like text.
func jsonValue(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int64, uint64:
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = jsonValue(item)
		}
		return out
	case wiremsg.Map:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[fmt.Sprint(k)] = jsonValue(item)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = jsonValue(item)
		}
		return out
	case wiremsg.UUID:
		return x.String()
	}
	if _, err := json.Marshal(v); err == nil {
		return v
	}
	return fmt.Sprintf("%v (%v)", v, errNotJSON)
}
