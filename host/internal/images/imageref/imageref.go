// Package imageref holds upstream's image-name rules (ImageRef.from_image_str
// in common/docker.py) as pure string work, so that the RPC layer can read
// image names without the Docker-backed images package.
package imageref

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// DefaultRegistry is upstream's default_registry for names without one.
const DefaultRegistry = "index.docker.io"

// ErrInvalid is returned for a canonical name that is not an ImageRef.
var ErrInvalid = errors.New("canonical name does not parse as an ImageRef")

// Ref is a canonical name split into its parts.
type Ref struct {
	Registry string
	Project  string
	Name     string
	Tag      string
}

// Parse splits a canonical name as upstream's ImageRef.from_image_str: the
// first path component is the registry when it is the named registry or
// an IP address, the project is a prefix of the rest, and the tag follows
// the last colon (default "latest").
func Parse(canonical, project, registry string) (Ref, error) {
	var ref Ref
	if canonical == "" || strings.Contains(canonical, "://") || strings.HasPrefix(canonical, "//") || strings.Contains(canonical, "@") {
		return ref, fmt.Errorf("%w: %q", ErrInvalid, canonical)
	}
	ref.Registry, ref.Project = registry, project
	rest := canonical
	if first, after, found := strings.Cut(canonical, "/"); found && (first == registry || isIPHost(first)) {
		ref.Registry, rest = first, after
	}
	if ref.Registry == "" {
		ref.Registry = DefaultRegistry
	}
	name := rest
	ref.Tag = "latest"
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		name, ref.Tag = rest[:i], rest[i+1:]
	}
	switch {
	case name == "" || ref.Tag == "":
		return ref, fmt.Errorf("%w: %q has an empty name or tag", ErrInvalid, canonical)
	case project == "":
		ref.Name = name
	case name == project:
		ref.Name = ""
	case strings.HasPrefix(name, project+"/"):
		ref.Name = strings.TrimPrefix(name, project+"/")
	default:
		return ref, fmt.Errorf("%w: %q is not in project %q", ErrInvalid, canonical, project)
	}
	return ref, nil
}

// isIPHost says whether s is an IP address with an optional port, which
// upstream always takes for a registry.
func isIPHost(s string) bool {
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	return net.ParseIP(strings.Trim(host, "[]")) != nil
}
