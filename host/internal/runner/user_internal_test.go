package runner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The user setup follows upstream's runner/entrypoint.sh (26.8.1): the
// user owning the uid renamed to work, else work renumbered or created;
// the gid's group, else work renumbered or created; group<gid> for each
// missing additional gid; su-exec's groups plus 42.
func TestSetupWorkUser(t *testing.T) {
	cases := []struct {
		description string
		passwd      string
		group       string
		user        KernelUser
		wantPasswd  string
		wantGroup   string
		wantGroups  []int
	}{
		{
			description: "empty files: user and group work made, grpread too",
			user:        KernelUser{UID: 2000, GID: 3000, AdditionalGIDs: []int{4000}},
			wantPasswd:  "work:x:2000:3000:User:/home/work:/bin/sh\n",
			wantGroup:   "work:x:3000:\ngrpread:x:1002:work\ngroup4000:x:4000:work\n",
			wantGroups:  []int{3000, 4000, 42, 1002},
		},
		{
			description: "existing work user and group renumbered, other lines kept",
			passwd:      "root:x:0:0:root:/root:/bin/bash\n# a comment\nwork:x:1000:1000:Work:/home/work:/bin/bash\n",
			group:       "root:x:0:\nwork:x:1000:\n",
			user:        KernelUser{UID: 2000, GID: 3000},
			wantPasswd:  "root:x:0:0:root:/root:/bin/bash\n# a comment\nwork:x:2000:3000:Work:/home/work:/bin/bash\n",
			wantGroup:   "root:x:0:\nwork:x:3000:\ngrpread:x:1002:work\n",
			wantGroups:  []int{3000, 42, 1002},
		},
		{
			description: "the gid belongs to another group: it is used, work's group untouched",
			passwd:      "root:x:0:0:root:/root:/bin/sh\n",
			group:       "root:x:0:\nusers:x:100:\nwork:x:1000:\n",
			user:        KernelUser{UID: 1500, GID: 100},
			wantPasswd:  "root:x:0:0:root:/root:/bin/sh\nwork:x:1500:100:User:/home/work:/bin/sh\n",
			wantGroup:   "root:x:0:\nusers:x:100:\nwork:x:1000:\ngrpread:x:1002:work\n",
			wantGroups:  []int{100, 42, 1002},
		},
		{
			description: "the uid belongs to another user: renamed to work with home /home/work, memberships follow",
			passwd:      "root:x:0:0:root:/root:/bin/sh\nubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n",
			group:       "ubuntu:x:1000:\nsudo:x:27:ubuntu\nshadow:x:42:\n",
			user:        KernelUser{UID: 1000, GID: 1000},
			wantPasswd:  "root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000:Ubuntu:/home/work:/bin/sh\n",
			wantGroup:   "ubuntu:x:1000:\nsudo:x:27:work\nshadow:x:42:work\n",
			wantGroups:  []int{1000, 42, 27},
		},
		{
			description: "renaming over an existing work entry drops that entry",
			passwd:      "work:x:1000:1000::/home/work:/bin/sh\nuser2:x:2000:2000::/home/user2:/bin/sh\n",
			group:       "g:x:2000:\n",
			user:        KernelUser{UID: 2000, GID: 2000},
			wantPasswd:  "work:x:2000:2000::/home/work:/bin/sh\n",
			wantGroup:   "g:x:2000:\n",
			wantGroups:  []int{2000, 42},
		},
		{
			description: "existing additional group gets work as a member once",
			passwd:      "work:x:2000:3000::/home/work:/bin/sh\n",
			group:       "work:x:3000:\nvideo:x:44:alice,work\ndocker:x:999:alice\n",
			user:        KernelUser{UID: 2000, GID: 3000, AdditionalGIDs: []int{44, 999}},
			wantPasswd:  "work:x:2000:3000::/home/work:/bin/sh\n",
			wantGroup:   "work:x:3000:\nvideo:x:44:alice,work\ndocker:x:999:alice,work\n",
			wantGroups:  []int{3000, 44, 999, 42},
		},
		{
			description: "malformed lines are kept as they are, not matched",
			passwd:      "broken line\nwork:x:notanumber:1:::\n",
			group:       "::\n",
			user:        KernelUser{UID: 2000, GID: 3000},
			wantPasswd:  "broken line\nwork:x:notanumber:1:::\nwork:x:2000:3000:User:/home/work:/bin/sh\n",
			wantGroup:   "::\nwork:x:3000:\ngrpread:x:1002:work\n",
			wantGroups:  []int{3000, 42, 1002},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := setupWorkUser([]byte(tc.passwd), []byte(tc.group), tc.user, "/bin/sh")
			if err != nil {
				t.Fatal(err)
			}
			if string(got.passwd) != tc.wantPasswd {
				t.Errorf("passwd:\n%s\nwant:\n%s", got.passwd, tc.wantPasswd)
			}
			if string(got.group) != tc.wantGroup {
				t.Errorf("group:\n%s\nwant:\n%s", got.group, tc.wantGroup)
			}
			if !slices.Equal(got.groups, tc.wantGroups) {
				t.Errorf("groups %v, want %v", got.groups, tc.wantGroups)
			}
		})
	}
}

func TestKernelUserFromEnv(t *testing.T) {
	cases := []struct {
		description string
		env         []string
		want        KernelUser
		wantErr     string
	}{
		{description: "unset: upstream's 9001", env: nil, want: KernelUser{UID: 9001, GID: 9001}},
		{description: "ids and additional gids, duplicates and blanks dropped", env: []string{"LOCAL_USER_ID=2000", "LOCAL_GROUP_ID=3000", "ADDITIONAL_GIDS=4000, 5000,,4000"},
			want: KernelUser{UID: 2000, GID: 3000, AdditionalGIDs: []int{4000, 5000}}},
		{description: "root", env: []string{"LOCAL_USER_ID=0", "LOCAL_GROUP_ID=0"}, want: KernelUser{}},
		{description: "not a number", env: []string{"LOCAL_USER_ID=work"}, wantErr: "LOCAL_USER_ID"},
		{description: "negative gid", env: []string{"LOCAL_GROUP_ID=-1"}, wantErr: "LOCAL_GROUP_ID"},
		{description: "bad additional gid", env: []string{"ADDITIONAL_GIDS=1,x"}, wantErr: "ADDITIONAL_GIDS"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := KernelUserFromEnv(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.AdditionalGIDs, tc.want.AdditionalGIDs) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// SetupUser writes the files under its root and gives root (uid 0) no
// credential, as upstream runs uid 0 as root.
func TestSetupUserFiles(t *testing.T) {
	root := t.TempDir()
	if cred, err := SetupUser(root, KernelUser{}); err != nil || cred != nil {
		t.Fatalf("uid 0: %v, %v; want no credential", cred, err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/passwd")); err == nil {
		t.Fatal("uid 0 wrote /etc/passwd")
	}
	cred, err := SetupUser(root, KernelUser{UID: 2000, GID: 3000, AdditionalGIDs: []int{4000}})
	if err != nil {
		t.Fatal(err)
	}
	if cred.Uid != 2000 || cred.Gid != 3000 || !slices.Contains(cred.Groups, 4000) || !slices.Contains(cred.Groups, 42) {
		t.Fatalf("credential %+v", cred)
	}
	raw, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !strings.Contains(string(raw), "work:x:2000:3000:User:/home/work:") {
		t.Fatalf("passwd %q", raw)
	}
}

// FuzzSetupWorkUser: whatever the image's files hold, the result has one
// work entry with the ids asked for, and its groups include the gid.
func FuzzSetupWorkUser(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000::/home/work:/bin/sh\n"), []byte("work:x:1000:\n"), 2000, 3000)
	f.Add([]byte("a:x:5:5::/:/bin/sh\n"), []byte("b:x:5:a\n#c\n"), 5, 5)
	f.Add([]byte(""), []byte("::::\n"), 0, 0)
	f.Fuzz(func(t *testing.T, passwd, group []byte, uid, gid int) {
		if uid < 0 || gid < 0 || uid > 1<<31 || gid > 1<<31 {
			return
		}
		got, err := setupWorkUser(passwd, group, KernelUser{UID: uid, GID: gid, AdditionalGIDs: []int{4000}}, "/bin/sh")
		if err != nil {
			return // an image whose files cannot hold work is refused, never mangled silently
		}
		if got.groups[0] != gid {
			t.Fatalf("groups %v do not start with %d", got.groups, gid)
		}
		again, err := setupWorkUser(got.passwd, got.group, KernelUser{UID: uid, GID: gid, AdditionalGIDs: []int{4000}}, "/bin/sh")
		if err != nil || string(again.passwd) != string(got.passwd) {
			t.Fatalf("not idempotent: %v\n%q\n%q", err, got.passwd, again.passwd)
		}
	})
}
