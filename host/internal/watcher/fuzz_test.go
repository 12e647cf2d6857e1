package watcher

import (
	"path/filepath"
	"strings"
	"testing"
)

func FuzzDecodeMountRequest(f *testing.F) {
	for _, seed := range []string{
		`{"name":"data","fs_type":"nfs4","fs_location":"nas:/export","options":"vers=4.1,ro","edit_fstab":true,"fstab_path":"/etc/fstab"}`,
		`{"name":"..","fs_type":"nfs","fs_location":"-o"}`,
		`{"name":"a/b"}`,
		`{"name":"x","fs_type":"cifs","fs_location":"//h/s","options":null,"fstab_path":null}`,
		`{"name":"x","fs_type":"nfs","fs_location":"[fe80::1]:/e"}`,
		`{"name":5}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, forMount bool) {
		req, err := DecodeMountRequest(strings.NewReader(string(body)), forMount)
		if err != nil {
			fe, ok := err.(*FieldError)
			if !ok || fe.Field == "" || !strings.HasPrefix(fe.Error(), fe.Field+": ") {
				t.Fatalf("error %v does not name a field", err)
			}
			return
		}
		// The mount point stays a direct child of the prefix.
		const prefix = "/vfroot"
		mp := filepath.Join(prefix, req.Name)
		if filepath.Dir(mp) != prefix || filepath.Base(mp) != req.Name {
			t.Fatalf("name %q escapes the prefix: %q", req.Name, mp)
		}
		if !filepath.IsAbs(req.FstabPath) || filepath.Clean(req.FstabPath) != req.FstabPath {
			t.Fatalf("fstab_path %q accepted", req.FstabPath)
		}
		if !forMount {
			return
		}
		for field, v := range map[string]string{"fs_type": req.FSType, "fs_location": req.FSLocation, "options": req.Options} {
			if strings.HasPrefix(v, "-") || strings.ContainsAny(v, " \t\r\n\x00;&|$`<>\\'\"") {
				t.Fatalf("%s %q accepted", field, v)
			}
		}
		if req.FSType == "" || req.FSLocation == "" {
			t.Fatal("required field accepted empty")
		}
		// The fstab line reads back as the same six fields.
		entry := FstabEntry{Device: req.FSLocation, Mountpoint: mp, FSType: req.FSType, Options: req.Options}
		fields, ok := fstabFields(entry.String())
		if !ok || len(fields) != 6 || fields[0] != req.FSLocation || fields[1] != mp || fields[2] != req.FSType {
			t.Fatalf("fstab line %q reads back as %q", entry.String(), fields)
		}
		text, changed := FstabAdd("", entry)
		if back, removed := FstabRemoveByMountpoint(text, mp); !changed || !removed || back != "" {
			t.Fatalf("fstab round trip of %q: %q", text, back)
		}
	})
}
