package portpool

import (
	"errors"
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
