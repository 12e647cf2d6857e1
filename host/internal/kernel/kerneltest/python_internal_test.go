package kerneltest

import "testing"

func TestDebianEntry(t *testing.T) {
	cases := []struct {
		name, text    string
		deb822        bool
		mirror, suite string
		found         bool
	}{
		{name: "deb822 as Debian 12 ships it", deb822: true, text: `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`, mirror: "http://deb.debian.org/debian", suite: "bookworm", found: true},
		{name: "deb822, security first and a disabled stanza", deb822: true, text: `Types: deb
URIs: http://security.debian.org/debian-security
Suites: trixie-security

Enabled: no
Types: deb
URIs: http://old.example/debian
Suites: trixie

Types: deb-src deb
URIs: http://mirror.example/debian/
Suites: trixie-updates trixie
`, mirror: "http://mirror.example/debian/", suite: "trixie", found: true},
		{name: "deb822 of a third-party repository", deb822: true, text: "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"},
		{name: "one-line format with options", text: `# deb http://commented.example/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://ftp.example.org/debian bookworm main contrib
`, mirror: "http://ftp.example.org/debian", suite: "bookworm", found: true},
		{name: "one-line, only deb-src", text: "deb-src http://deb.debian.org/debian bookworm main\n"},
	}
	for _, c := range cases {
		mirror, suite, found := debianEntry(c.text, c.deb822)
		if mirror != c.mirror || suite != c.suite || found != c.found {
			t.Errorf("%s: got %q %q %v, want %q %q %v", c.name, mirror, suite, found, c.mirror, c.suite, c.found)
		}
	}
}
