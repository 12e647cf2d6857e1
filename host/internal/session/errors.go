package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// NamedError maps a kernel-lifecycle error onto the upstream exception
// the manager sees in the FAILURE; an error already named is kept.
func NamedError(err error) error {
	if err == nil {
		return nil
	}
	var named *sessionapi.Error
	if errors.As(err, &named) {
		return err
	}
	name := "AgentError"
	switch {
	case errors.Is(err, alloc.ErrInsufficientResource):
		name = "InsufficientResource"
	case errors.Is(err, alloc.ErrNotMultipleOfQuantum):
		name = "NotMultipleOfQuantum"
	case errors.Is(err, alloc.ErrInvalidArgument):
		name = "InvalidResourceArgument"
	case errors.Is(err, alloc.ErrInvalidCombination):
		name = "InvalidResourceCombination"
	case errors.Is(err, alloc.ErrFragmented):
		name = "FractionalResourceFragmented"
	case errors.Is(err, alloc.ErrUnsupportedSlot):
		name = "UnsupportedResource"
	case errors.Is(err, alloc.ErrResource):
		name = "ResourceError"
	case errors.Is(err, alloc.ErrConfiguration):
		name = "InvalidResourceConfigError"
	case errors.Is(err, portpool.ErrExhausted):
		name = "PortPoolExhaustedError"
	case errors.Is(err, kernel.ErrKernelNotFound):
		name = "KernelNotFoundError"
	case errors.Is(err, kernel.ErrImageNotFound):
		name = "ImageNotAvailable"
	case errors.Is(err, kernel.ErrImageArchitectureMismatch):
		name = "ImageArchitectureMismatchError"
	case errors.Is(err, kernel.ErrModelFolderNotSpecified):
		name = "ModelFolderNotSpecifiedError"
	case errors.Is(err, kernel.ErrModelDefinitionNotFound):
		name = "ModelDefinitionNotFoundError"
	case errors.Is(err, kernel.ErrModelDefinitionEmpty):
		name = "ModelDefinitionEmptyError"
	case errors.Is(err, kernel.ErrModelDefinitionInvalid):
		name = "ModelDefinitionValidationError"
	case errors.Is(err, kernel.ErrReservedPort):
		name = "ReservedPortError"
	case errors.Is(err, kernel.ErrPortConflict):
		name = "PortConflictError"
	case errors.Is(err, kernel.ErrInvalidRequest), errors.Is(err, kernel.ErrKernelExists):
		name = "InvalidArgumentError"
	case errors.Is(err, kernel.ErrRunnerTimeout), errors.Is(err, context.DeadlineExceeded):
		name = "TimeoutError"
	case errors.Is(err, runnerclient.ErrInvalidMode), errors.Is(err, runnerclient.ErrUnknownRun):
		name = "InvalidArgumentError"
	}
	return &sessionapi.Error{Name: name, Err: err}
}

// imageErr names an image error as upstream's exceptions.
func imageErr(err error) error {
	switch {
	case errors.Is(err, images.ErrNotAvailable):
		return &sessionapi.Error{Name: "ImageNotAvailable", Err: err}
	case errors.Is(err, images.ErrPullTimeout):
		return &sessionapi.Error{Name: "ImagePullTimeoutError", Err: err}
	case errors.Is(err, images.ErrPullFailed):
		return &sessionapi.Error{Name: "ImagePullFailedError", Err: err}
	}
	return &sessionapi.Error{Name: "AgentError", Err: err}
}

// pathError is a Python-style error about the value at path in a request.
func pathError(name, path, format string, args ...any) error {
	return &sessionapi.Error{Name: name, Err: fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))}
}
