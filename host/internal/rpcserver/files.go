package rpcserver

import (
	"context"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// KernelFileService is the file access of a kernel service (part of
// KernelService): the kernel's work dir, with errors named as upstream's.
type KernelFileService interface {
	UploadFile(kernelID, filename string, data []byte) error
	DownloadFile(kernelID, path string) ([]byte, error)
	DownloadSingle(kernelID, path string) ([]byte, error)
	ListFiles(kernelID, path string) (sessionapi.FileListing, error)
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
	name, err := strValue(argPath(method, "filename"), args[1])
	if err != nil {
		return nil, err
	}
	data, ok := args[2].([]byte)
	if !ok {
		return nil, mustBe(argPath(method, "filedata"), "bytes", args[2])
	}
	return nil, km.svc.UploadFile(kid, name, data)
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
	p, err := strValue(argPath(method, pathArg), args[1])
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
		return nil, err
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
		return nil, err
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
		return nil, err
	}
	return map[string]any{"files": l.Files, "errors": l.Errors, "abspath": l.Abspath}, nil
}
