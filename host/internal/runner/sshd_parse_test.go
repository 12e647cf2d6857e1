package runner

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testPublicKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestParseAuthorizedKeys(t *testing.T) {
	a, b := testPublicKey(t), testPublicKey(t)
	line := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	tests := []struct {
		description string
		content     string
		want        []ssh.PublicKey
	}{
		{"two keys with a comment and blank lines", "# users\n\n" + line(a) + " alice@x\n  " + line(b) + "\n", []ssh.PublicKey{a, b}},
		{"garbage lines are skipped", "not a key\n" + line(a) + "\nssh-ed25519 AAAA-broken\n", []ssh.PublicKey{a}},
		{"options before the key", `no-pty,command="true" ` + line(b) + "\n", []ssh.PublicKey{b}},
		{"empty file", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got := parseAuthorizedKeys([]byte(tc.content))
			if len(got) != len(tc.want) {
				t.Fatalf("%d keys, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i].Marshal(), tc.want[i].Marshal()) {
					t.Errorf("key %d differs", i)
				}
			}
		})
	}
}

func TestParsePortMapping(t *testing.T) {
	tests := []struct {
		description string
		content     string
		want        string
		wantErr     bool
	}{
		{"sorted by host", `{"sub1": ["10.0.0.2", 30022], "main1": ["10.0.0.1", 30021]}`, "[{main1 10.0.0.1 30021} {sub1 10.0.0.2 30022}]", false},
		{"empty mapping", `{}`, "[]", false},
		{"not a pair", `{"main1": ["10.0.0.1"]}`, "", true},
		{"port out of range", `{"main1": ["10.0.0.1", 70000]}`, "", true},
		{"a newline would inject ssh_config lines", `{"main1": ["10.0.0.1\nProxyCommand x", 22]}`, "", true},
		{"not JSON", `main1 10.0.0.1 22`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, err := parsePortMapping([]byte(tc.content))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && fmt.Sprint(got) != tc.want && !(tc.want == "[]" && len(got) == 0) {
				t.Errorf("got %v, want %s", got, tc.want)
			}
		})
	}
}

// FuzzParseAuthorizedKeys: any file content parses without panicking, and
// every key found is one that its own authorized_keys line gives back.
func FuzzParseAuthorizedKeys(f *testing.F) {
	f.Add([]byte(string(ssh.MarshalAuthorizedKey(testPublicKey(f))) + "# comment\n\ngarbage\n"))
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, k := range parseAuthorizedKeys(raw) {
			again := parseAuthorizedKeys(ssh.MarshalAuthorizedKey(k))
			if len(again) != 1 || !bytes.Equal(again[0].Marshal(), k.Marshal()) {
				t.Fatalf("key %s does not survive its own authorized_keys line", ssh.FingerprintSHA256(k))
			}
		}
	})
}

// FuzzParsePortMapping: any content parses or fails without panicking, and
// what it accepts cannot break out of an ssh_config line.
func FuzzParsePortMapping(f *testing.F) {
	f.Add([]byte(`{"main1": ["10.0.0.1", 30021], "sub1": ["h", 22]}`))
	f.Add([]byte(`{"x": [1, "a"]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		entries, err := parsePortMapping(raw)
		if err != nil {
			return
		}
		for _, e := range entries {
			if strings.ContainsAny(e.host+e.hostname+e.port, " \t\r\n") {
				t.Fatalf("entry %+v would break an ssh_config line", e)
			}
		}
	})
}
