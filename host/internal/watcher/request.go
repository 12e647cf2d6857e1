package watcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// DefaultFstabPath is used when a request names no fstab.
const DefaultFstabPath = "/etc/fstab"

// maxRequestBody bounds a mount request's JSON.
const maxRequestBody = 64 << 10

// MountRequest is the JSON body of POST and DELETE /mounts.
type MountRequest struct {
	Name       string `json:"name"`
	FSType     string `json:"fs_type"`
	FSLocation string `json:"fs_location"`
	Options    string `json:"options"`
	EditFstab  bool   `json:"edit_fstab"`
	FstabPath  string `json:"fstab_path"`
}

// FieldError is a request the watcher refuses; Field names the JSON field
// (or "body" when the JSON itself is bad).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

var (
	// A mount name is one path component: no "/", no leading dot or dash,
	// nothing fstab or a shell would treat specially.
	mountNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@+:=-]*$`)
	// Filesystem types as the kernel and mount helpers name them (nfs4,
	// fuse.sshfs, cifs, ext4, wekafs, ...).
	fsTypePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.+-]*$`)
	// Mount options: comma-separated words and key=value pairs.
	optionsPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_=,.:/@+%~-]*$`)
)

const (
	maxNameLen   = 255
	maxFSTypeLen = 64
	maxFieldLen  = 4096
)

// fsLocationForbidden are characters no device, share or server path
// needs; refusing them keeps fstab lines and logs unambiguous.
const fsLocationForbidden = ";&|$`<>(){}*?!'\"\\#"

// DecodeMountRequest reads and validates a mount request. forMount selects
// POST /mounts, which also needs fs_type and fs_location; DELETE needs only
// the name (and the fstab path when editing).
func DecodeMountRequest(body io.Reader, forMount bool) (MountRequest, error) {
	var req MountRequest
	data, err := io.ReadAll(io.LimitReader(body, maxRequestBody+1))
	if err != nil {
		return req, fieldErr("body", "cannot read the request: %v", err)
	}
	if len(data) > maxRequestBody {
		return req, fieldErr("body", "larger than %d bytes", maxRequestBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return req, fieldErr("body", "empty; expected a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return req, fieldErr(typeErr.Field, "must be a JSON %s, not %s", typeErr.Type.Kind(), typeErr.Value)
		}
		return req, fieldErr("body", "not a JSON object: %v", err)
	}
	if dec.More() {
		return req, fieldErr("body", "unexpected data after the JSON object")
	}
	if err := req.Validate(forMount); err != nil {
		return req, err
	}
	if req.FstabPath == "" {
		req.FstabPath = DefaultFstabPath
	}
	return req, nil
}

// Validate checks every field the operation uses.
func (r MountRequest) Validate(forMount bool) error {
	if err := ValidateMountName(r.Name); err != nil {
		return err
	}
	if forMount {
		if err := validateFSType(r.FSType); err != nil {
			return err
		}
		if err := validateFSLocation(r.FSLocation); err != nil {
			return err
		}
		if err := validateOptions(r.Options); err != nil {
			return err
		}
	}
	if r.FstabPath != "" {
		if err := ValidateFstabPath("fstab_path", r.FstabPath); err != nil {
			return err
		}
	}
	return nil
}

// ValidateMountName accepts one safe path component.
func ValidateMountName(name string) error {
	switch {
	case name == "":
		return fieldErr("name", "required")
	case len(name) > maxNameLen:
		return fieldErr("name", "longer than %d bytes", maxNameLen)
	case strings.Contains(name, "/"):
		return fieldErr("name", "must be a single directory name, without %q", "/")
	case strings.Contains(name, ".."):
		return fieldErr("name", "must not contain %q", "..")
	case !mountNamePattern.MatchString(name):
		return fieldErr("name", "%q: use letters, digits and _.@+:=- (not first: . or -)", name)
	}
	return nil
}

func validateFSType(t string) error {
	switch {
	case t == "":
		return fieldErr("fs_type", "required")
	case len(t) > maxFSTypeLen:
		return fieldErr("fs_type", "longer than %d bytes", maxFSTypeLen)
	case !fsTypePattern.MatchString(t):
		return fieldErr("fs_type", "%q is not a filesystem type (lower-case letters, digits and _.+-)", t)
	}
	return nil
}

func validateFSLocation(loc string) error {
	switch {
	case loc == "":
		return fieldErr("fs_location", "required")
	case len(loc) > maxFieldLen:
		return fieldErr("fs_location", "longer than %d bytes", maxFieldLen)
	case strings.HasPrefix(loc, "-"):
		return fieldErr("fs_location", "must not start with %q", "-")
	}
	for _, r := range loc {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fieldErr("fs_location", "must not contain spaces or control characters")
		}
		if strings.ContainsRune(fsLocationForbidden, r) {
			return fieldErr("fs_location", "must not contain %q", r)
		}
	}
	return nil
}

func validateOptions(opts string) error {
	switch {
	case opts == "":
		return nil
	case len(opts) > maxFieldLen:
		return fieldErr("options", "longer than %d bytes", maxFieldLen)
	case !optionsPattern.MatchString(opts):
		return fieldErr("options", "%q: use comma-separated options of letters, digits and _=,.:/@+%%~- (not first: -)", opts)
	}
	return nil
}

// ValidateFstabPath accepts an absolute, clean path.
func ValidateFstabPath(field, p string) error {
	switch {
	case p == "":
		return fieldErr(field, "required")
	case len(p) > maxFieldLen:
		return fieldErr(field, "longer than %d bytes", maxFieldLen)
	case !filepath.IsAbs(p):
		return fieldErr(field, "%q is not an absolute path", p)
	case filepath.Clean(p) != p:
		return fieldErr(field, "%q is not a clean path (no //, . or .. parts, no trailing /)", p)
	}
	for _, r := range p {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fieldErr(field, "must not contain spaces or control characters")
		}
	}
	return nil
}
