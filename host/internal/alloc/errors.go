package alloc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// errorKind is a sentinel that can sit under a broader sentinel, so that
// errors.Is(ErrNotMultipleOfQuantum, ErrInvalidArgument) holds as upstream's
// NotMultipleOfQuantum subclasses InvalidResourceArgument.
type errorKind struct {
	msg    string
	parent error
}

func (e *errorKind) Error() string { return e.msg }
func (e *errorKind) Unwrap() error { return e.parent }

// Sentinels a caller can test with errors.Is. All but ErrConfiguration are
// resource errors (upstream's ResourceError family, reported to the manager
// as a bad request).
var (
	ErrResource             error = &errorKind{msg: "resource error"}
	ErrInsufficientResource error = &errorKind{msg: "insufficient resource", parent: ErrResource}
	ErrInvalidArgument      error = &errorKind{msg: "invalid resource argument", parent: ErrResource}
	ErrNotMultipleOfQuantum error = &errorKind{msg: "amount is not a multiple of the quantum", parent: ErrInvalidArgument}
	ErrInvalidCombination   error = &errorKind{msg: "invalid resource combination", parent: ErrResource}
	ErrFragmented           error = &errorKind{msg: "fractional resource would be fragmented", parent: ErrResource}
	ErrUnsupportedSlot      error = &errorKind{msg: "unsupported resource slot", parent: ErrResource}
	// ErrConfiguration reports a setup problem rather than a bad request:
	// an affinity lookup that finds no device of a slot's kind, a device kind
	// missing from the allocation order, an invalid map description.
	ErrConfiguration error = &errorKind{msg: "resource configuration error"}
)

// ResourceError carries the details of a failed allocation step. It unwraps
// to one of the sentinels above.
type ResourceError struct {
	Kind       error  // one of the sentinels
	DeviceKind string // plugin key, e.g. "cuda"; empty when not known
	Slot       string
	Requested  decimal.Decimal
	// Allocatable is what the slot could still give; meaningful only when
	// HasAllocatable is set.
	Allocatable    decimal.Decimal
	HasAllocatable bool
	Detail         string
}

func (e *ResourceError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.DeviceKind != "" {
		fmt.Fprintf(&b, ": device %s", e.DeviceKind)
	}
	if e.Slot != "" {
		fmt.Fprintf(&b, ": slot %s: requested %s", e.Slot, e.Requested.String())
		if e.HasAllocatable {
			fmt.Fprintf(&b, ", allocatable %s", e.Allocatable.String())
		}
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *ResourceError) Unwrap() error { return e.Kind }

func newSlotError(kind error, slot string, requested decimal.Decimal, detail string) *ResourceError {
	return &ResourceError{Kind: kind, Slot: slot, Requested: requested, Detail: detail}
}

func insufficient(slot string, requested, allocatable decimal.Decimal, detail string) *ResourceError {
	return &ResourceError{
		Kind: ErrInsufficientResource, Slot: slot, Requested: requested,
		Allocatable: allocatable, HasAllocatable: true, Detail: detail,
	}
}

// withDeviceKind fills in the device kind of a ResourceError raised inside a
// map, so messages name the plugin too.
func withDeviceKind(err error, kind string) error {
	var re *ResourceError
	if errors.As(err, &re) && re.DeviceKind == "" {
		re.DeviceKind = kind
	}
	return err
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfiguration, fmt.Sprintf(format, args...))
}
