package rpcserver

import (
	"context"
	"errors"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// KernelFileService is the file access of a kernel service (part of
// KernelService); *kernel.Manager implements it on the kernel's work dir.
type KernelFileService interface {
	UploadFile(kernelID, filename string, data []byte) error
	DownloadFile(kernelID, path string) ([]byte, error)
	DownloadSingle(kernelID, path string) ([]byte, error)
	ListFiles(kernelID, path string) (kernel.FileListing, error)
}

var _ KernelFileService = (*kernel.Manager)(nil)

// fileErr names kernel file errors as upstream's exceptions: paths out of
// /home/work are PermissionError, size and kind refusals ValueError, a
// missing kernel KernelNotFoundError, and file-system failures
// RuntimeError.
func fileErr(err error) error {
	var rpcErr *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rpcErr):
		return err
	case errors.Is(err, kernel.ErrKernelNotFound):
		return kernelErr(err)
	case errors.Is(err, kernel.ErrOutsideWork):
		return &Error{Name: "PermissionError", Err: err}
	case errors.Is(err, kernel.ErrTooLarge), errors.Is(err, kernel.ErrNotSingleFile):
		return &Error{Name: "ValueError", Err: err}
	}
	return &Error{Name: "RuntimeError", Err: err}
}

// uploadFile(kernel_id, filename, filedata) -> None.
func (km *KernelMethods) uploadFile(_ context.Context, call *Call) (any, error) {
	const method = "upload_file"
	args, err := call.bind(param{name: "kernel_id"}, param{name: "filename"}, param{name: "filedata"})
	if err != nil {
		return nil, err
	}
	kid, err := km.lookupID(method, args[0])
	if err != nil {
		return nil, err
	}
	name, err := argString(method, "filename", args[1])
	if err != nil {
		return nil, err
	}
	data, ok := args[2].([]byte)
	if !ok {
		return nil, typeError("%s(): argument 'filedata' must be bytes, not %s", method, wiremsg.PyTypeName(args[2]))
	}
	return nil, fileErr(km.svc.UploadFile(kid, name, data))
}

// pathCall binds (kernel_id, <pathArg>).
func (km *KernelMethods) pathCall(call *Call, method, pathArg string) (string, string, error) {
	args, err := call.bind(param{name: "kernel_id"}, param{name: pathArg})
	if err != nil {
		return "", "", err
	}
	kid, err := km.lookupID(method, args[0])
	if err != nil {
		return "", "", err
	}
	p, err := argString(method, pathArg, args[1])
	if err != nil {
		return "", "", err
	}
	return kid, p, nil
}

// downloadFile(kernel_id, filepath) -> tar archive bytes.
func (km *KernelMethods) downloadFile(_ context.Context, call *Call) (any, error) {
	kid, p, err := km.pathCall(call, "download_file", "filepath")
	if err != nil {
		return nil, err
	}
	data, err := km.svc.DownloadFile(kid, p)
	if err != nil {
		return nil, fileErr(err)
	}
	return data, nil
}

// downloadSingle(kernel_id, filepath) -> the file's bytes.
func (km *KernelMethods) downloadSingle(_ context.Context, call *Call) (any, error) {
	kid, p, err := km.pathCall(call, "download_single", "filepath")
	if err != nil {
		return nil, err
	}
	data, err := km.svc.DownloadSingle(kid, p)
	if err != nil {
		return nil, fileErr(err)
	}
	return data, nil
}

// listFiles(kernel_id, path) -> {files: JSON str, errors: str, abspath: str}.
func (km *KernelMethods) listFiles(_ context.Context, call *Call) (any, error) {
	kid, p, err := km.pathCall(call, "list_files", "path")
	if err != nil {
		return nil, err
	}
	l, err := km.svc.ListFiles(kid, p)
	if err != nil {
		return nil, fileErr(err)
	}
	return map[string]any{"files": l.Files, "errors": l.Errors, "abspath": l.Abspath}, nil
}
