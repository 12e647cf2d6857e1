package portpool

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestPool(t *testing.T) {
	now := time.Unix(1000, 0)
	pool, err := New(30000, 30001, 60*time.Second, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		description string
		do          func() (int, error)
		want        int
		wantErr     error
	}{
		{"first port", pool.Assign, 30000, nil},
		{"second port", pool.Assign, 30001, nil},
		{"exhausted", pool.Assign, 0, ErrExhausted},
		{"release 30000", func() (int, error) { return 0, pool.Release(30000) }, 0, nil},
		{"released port cools down", pool.Assign, 0, ErrExhausted},
		{"double release", func() (int, error) { return 0, pool.Release(30000) }, 0, ErrNotAssigned},
		{"after the cooldown", func() (int, error) { now = now.Add(61 * time.Second); return pool.Assign() }, 30000, nil},
	}
	for _, s := range steps {
		got, err := s.do()
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil && got != s.want) {
			t.Errorf("%s: got %d, %v; want %d, %v", s.description, got, err, s.want, s.wantErr)
		}
	}
	if _, err := New(10, 5, 0, nil); err == nil {
		t.Error("inverted range accepted")
	}
}

func TestAssignSkipsPortsTakenByOthers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	if taken >= 65535 {
		t.Skip("ephemeral port at the top of the range")
	}
	p, err := New(taken, taken+1, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.CheckWith(ListenProbe("127.0.0.1"))
	got, err := p.Assign()
	if err != nil {
		t.Fatal(err)
	}
	if got == taken {
		t.Fatalf("assigned port %d that another listener holds", got)
	}
	if _, err := p.Assign(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("second assign: %v, want ErrExhausted (the other port is taken)", err)
	}
}
