package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// builtinApp is how a python kernel starts an app its image has no
// service definition for.
type builtinApp struct {
	argv []string
	// dir is the app's working directory; "" is the runner's work dir.
	dir string
}

// builtinAppEnv is what a built-in app may touch: the interpreter
// (runtime_path), the temp dir for jupyter's config, the work dir, and
// the kernel user who owns what is made for it.
type builtinAppEnv struct {
	runtimePath string
	tempDir     string
	workDir     string
	cred        *syscall.Credential
}

// pythonBuiltinApp builds the command line of one of upstream's python
// runtime apps (kernel/python/__init__.py start_service, 26.8.1):
// jupyter/jupyterlab with a config file (ip 0.0.0.0, the service port, an
// empty token), ipython, digits, tensorboard on the service port with its
// logs in work/logs, spectravis in work/spectravis, and sftp. ok is false
// for any other name.
func pythonBuiltinApp(env builtinAppEnv, name string, port int) (app builtinApp, ok bool, err error) {
	py := env.runtimePath
	portStr := strconv.Itoa(port)
	switch name {
	case "jupyter", "jupyterlab":
		module := "notebook"
		if name == "jupyterlab" {
			module = "jupyterlab"
		}
		cfg, err := writeJupyterConfig(env, port)
		if err != nil {
			return builtinApp{}, true, err
		}
		return builtinApp{argv: []string{py, "-m", module, "--no-browser", "--config", cfg}}, true, nil
	case "ipython":
		return builtinApp{argv: []string{py, "-m", "IPython"}}, true, nil
	case "digits":
		return builtinApp{argv: []string{py, "-m", "digits"}}, true, nil
	case "tensorboard":
		logs := filepath.Join(env.workDir, "logs")
		if err := mkdirAllAs(env.cred, logs); err != nil {
			return builtinApp{}, true, err
		}
		return builtinApp{argv: []string{py, "-m", "tensorboard.main", "--logdir", logs,
			"--host", "0.0.0.0", "--port", portStr, "--debugger_port", "6064"}}, true, nil
	case "spectravis":
		return builtinApp{argv: []string{py, "-m", "http.server", "8000"}, dir: filepath.Join(env.workDir, "spectravis")}, true, nil
	case "sftp":
		return builtinApp{argv: []string{py, "-m", "sftpserver", "--port", portStr}}, true, nil
	}
	return builtinApp{}, false, nil
}

// jupyterConfig is the config upstream writes for jupyter and jupyterlab,
// line for line.
func jupyterConfig(port int) string {
	lines := []string{
		"c.NotebookApp.allow_root = True",
		`c.NotebookApp.ip = "0.0.0.0"`,
		"c.NotebookApp.port = " + strconv.Itoa(port),
		`c.NotebookApp.token = ""`,
		"c.FileContentsManager.delete_to_trash = False",
		"c.NotebookApp.tornado_settings = {'ws_ping_interval': 10000}",
	}
	return strings.Join(lines, "\n") + "\n"
}

// writeJupyterConfig writes jupyterConfig to a NamedTemporaryFile-like
// .py file the kernel user owns (upstream's runner, as the user, makes
// it with mode 0600) and returns its path.
func writeJupyterConfig(env builtinAppEnv, port int) (string, error) {
	f, err := os.CreateTemp(env.tempDir, "tmp*.py")
	if err != nil {
		return "", fmt.Errorf("jupyter config: %w", err)
	}
	name := f.Name()
	_, werr := f.WriteString(jupyterConfig(port))
	if err := errors.Join(werr, f.Close(), chownTo(env.cred, name)); err != nil {
		return "", fmt.Errorf("jupyter config: %w", err)
	}
	return name, nil
}
