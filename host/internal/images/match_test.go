package images

import "testing"

func TestMatchesDigest(t *testing.T) {
	const (
		id       = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		manifest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		other    = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	)
	repoDigests := []string{"cr.backend.ai/stable/python@" + manifest}
	cases := []struct {
		description string
		img         Image
		want        bool
	}{
		{"no digest given: presence is enough", Image{}, true},
		{"digest is the image ID", Image{Digest: id}, true},
		{"digest is the manifest digest", Image{Digest: manifest}, true},
		{"repo_digest as name@digest", Image{RepoDigest: "cr.backend.ai/stable/python@" + manifest}, true},
		{"repo_digest bare", Image{RepoDigest: manifest}, true},
		{"digest of another image", Image{Digest: other}, false},
		{"both of another image", Image{Digest: other, RepoDigest: "x@" + other}, false},
		{"one of the two matches", Image{Digest: other, RepoDigest: manifest}, true},
		{"blank digest is no digest", Image{Digest: "  "}, true},
	}
	for _, tc := range cases {
		if got := matchesDigest(id, repoDigests, tc.img); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.description, got, tc.want)
		}
	}
}

func TestNormalizeNamesOneImageOneWay(t *testing.T) {
	cases := []struct {
		description string
		a, b        string
		same        bool
	}{
		{"Docker Hub short and long forms", "busybox", "docker.io/library/busybox:latest", true},
		{"implied latest", "cr.backend.ai/stable/python", "cr.backend.ai/stable/python:latest", true},
		{"another tag", "cr.backend.ai/stable/python:3.11", "cr.backend.ai/stable/python:3.12", false},
		{"another registry", "127.0.0.1:5000/test/busybox:1", "127.0.0.1:5001/test/busybox:1", false},
		{"unparsable names are kept as they are", "Not A Name", "Not A Name", true},
	}
	for _, tc := range cases {
		if got := normalize(tc.a) == normalize(tc.b); got != tc.same {
			t.Errorf("%s: %q and %q same=%v, want %v", tc.description, normalize(tc.a), normalize(tc.b), got, tc.same)
		}
	}
}
