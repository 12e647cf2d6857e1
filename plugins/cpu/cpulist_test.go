package cpu

import (
	"slices"
	"strings"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        []int
		wantErr     string
	}{
		{description: "ranges and singles", input: "0-3,8,10-11", want: []int{0, 1, 2, 3, 8, 10, 11}},
		{description: "trailing newline from sysfs", input: "2-7,10-13\n", want: []int{2, 3, 4, 5, 6, 7, 10, 11, 12, 13}},
		{description: "single core", input: "5", want: []int{5}},
		{description: "one-core range", input: "4-4", want: []int{4}},
		{description: "unsorted and overlapping input is normalized", input: "8,0-2,1", want: []int{0, 1, 2, 8}},
		{description: "empty list means no cores", input: "\n", want: nil},
		{description: "backwards range", input: "3-1", wantErr: `element "3-1": range runs backwards`},
		{description: "open range", input: "0-", wantErr: "missing core number"},
		{description: "empty element", input: "0,,2", wantErr: "missing core number"},
		{description: "not a number", input: "0-3,x", wantErr: `"x" is not a core number`},
		{description: "signs are not numbers", input: "+1", wantErr: "not a core number"},
		{description: "inner spaces", input: "0, 1", wantErr: "not a core number"},
		{description: "absurd core number", input: "0-999999999", wantErr: "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseCPUList(tc.input)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFormatCoreList(t *testing.T) {
	cases := []struct {
		description string
		cores       []int
		want        string
	}{
		{description: "sorted numerically", cores: []int{10, 2, 0}, want: "0,2,10"},
		{description: "duplicates dropped", cores: []int{1, 1, 5}, want: "1,5"},
		{description: "nothing", cores: nil, want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if got := FormatCoreList(tc.cores); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseCPUList: whatever sysfs holds must not panic, and a parsed list
// written as Docker's CpusetCpus must parse back to the same cores.
func FuzzParseCPUList(f *testing.F) {
	for _, seed := range []string{"0-3,8,10-11", "2-7,10-13\n", "", "3-1", "0-", "1,,2", "65536", "0-65536"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cores, err := ParseCPUList(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(cores) {
			t.Fatalf("cores %v are not sorted", cores)
		}
		back, err := ParseCPUList(FormatCoreList(cores))
		if err != nil {
			t.Fatalf("formatted list %q does not parse: %v", FormatCoreList(cores), err)
		}
		if !slices.Equal(back, cores) {
			t.Fatalf("round trip %v -> %v", cores, back)
		}
	})
}
