package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/pelletier/go-toml/v2"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"

	"github.com/baiagent/baiagent/host/internal/adminapi"
	"github.com/baiagent/baiagent/host/internal/agent"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/logging"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/pluginverify"
)

func newPluginsCommand(opts *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "Show the compute plugins",
		Long: `Show the compute plugins. When an agent runs with this configuration, its
live state is shown (restarts included); otherwise the plugins are started
just long enough to be described.`,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List every plugin found in the plugin dirs with its state and slots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.load(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			statuses, live, err := pluginStatuses(cmd.Context(), cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), statuses)
			}
			if !live {
				fmt.Fprintln(cmd.ErrOrStderr(), "(no running agent answered; plugins were started for this listing)")
			}
			return writeTable(cmd.OutOrStdout(), statuses)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")

	var inspectJSON bool
	inspect := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show one plugin's devices and their attributes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := opts.load(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			detail, err := pluginDetail(cmd.Context(), cfg, args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if inspectJSON {
				return writeJSON(cmd.OutOrStdout(), detail)
			}
			return writeDetail(cmd.OutOrStdout(), detail)
		},
	}
	inspect.Flags().BoolVar(&inspectJSON, "json", false, "print JSON for scripts")
	cmd.AddCommand(list, inspect, newPluginsVerifyCommand())
	return cmd
}

func newPluginsVerifyCommand() *cobra.Command {
	var configFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify PATH",
		Short: "Run the conformance checks against a plugin binary",
		Long: `Launch the plugin binary at PATH as the agent does and check the plugin
contract: handshake and AutoMTLS, health, Describe, Configure (an unknown key
must be refused by name), ListDevices against WatchDevices, PrepareContainer
and RestoreAllocation of one unit of each device, metric shapes and units,
HardwareInfo, and exit within 1 s of Shutdown and of the agent's death.

--config FILE holds the plugin's configuration as TOML: either an agent.toml
(its [plugins.<name>] table is used) or the table's keys alone. Relative paths
in it resolve against FILE's directory, as against agent.toml's. Without it
the plugin gets config_json null, as from an agent.toml without its table.

Exits non-zero naming each failed check.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			opts := pluginverify.Options{Path: path, Logger: logging.New(cmd.ErrOrStderr(), zerolog.WarnLevel, logging.Console)}
			if configFile != "" {
				name := strings.TrimPrefix(filepath.Base(path), pluginhost.ExecutablePrefix)
				if opts.Config, err = loadPluginTable(configFile, name); err != nil {
					return err
				}
				if opts.WorkDir, err = filepath.Abs(filepath.Dir(configFile)); err != nil {
					return err
				}
			}
			// A short directory: unix socket paths are limited to ~108 bytes.
			if opts.RuntimeDir, err = os.MkdirTemp("", "baiverify"); err != nil {
				return err
			}
			defer os.RemoveAll(opts.RuntimeDir)
			report, err := pluginverify.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), report); err != nil {
					return err
				}
			} else {
				report.Write(cmd.OutOrStdout())
			}
			if failed := report.Failed(); len(failed) > 0 {
				return fmt.Errorf("plugin %s failed checks: %s", report.Plugin, strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "the plugin's configuration (TOML: an agent.toml or its [plugins.<name>] table alone)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// loadPluginTable reads a plugin's configuration: an agent.toml's
// [plugins.<name>] table, or the whole file when it has none.
func loadPluginTable(file, name string) (map[string]any, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("--config %s: %w", file, err)
	}
	if plugins, ok := doc["plugins"].(map[string]any); ok {
		if table, ok := plugins[name].(map[string]any); ok {
			return table, nil
		}
		return nil, fmt.Errorf("--config %s has a [plugins] table but no [plugins.%s]", file, name)
	}
	return doc, nil
}

// withPlugins asks the running agent if there is one; otherwise it starts
// the plugins in a private runtime dir (never the agent's own, whose stale
// cleanup would otherwise kill a running agent's plugins) and stops them.
func withPlugins(ctx context.Context, cfg *config.Config, stderr io.Writer,
	live func(*adminapi.Client) error, local func(*pluginhost.Host) error) (bool, error) {
	if c, err := adminapi.Dial(adminapi.SocketPath(cfg.Agent.IPCBasePath)); err == nil {
		return true, live(c)
	} else if !errors.Is(err, adminapi.ErrNoAgent) {
		return false, err
	}
	runtimeDir, err := os.MkdirTemp("", "baiplug")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(runtimeDir)
	opts := agent.PluginOptions(cfg, logging.New(stderr, zerolog.WarnLevel, logging.Console))
	opts.RuntimeDir = runtimeDir
	h := pluginhost.New(opts)
	if err := h.Start(ctx); err != nil {
		return false, err
	}
	defer h.Stop()
	return false, local(h)
}

func pluginStatuses(ctx context.Context, cfg *config.Config, stderr io.Writer) ([]pluginhost.Status, bool, error) {
	var out []pluginhost.Status
	live, err := withPlugins(ctx, cfg, stderr,
		func(c *adminapi.Client) (err error) { out, err = c.Plugins(ctx); return err },
		func(h *pluginhost.Host) error { out = h.Statuses(); return nil })
	return out, live, err
}

func pluginDetail(ctx context.Context, cfg *config.Config, name string, stderr io.Writer) (adminapi.PluginDetail, error) {
	var out adminapi.PluginDetail
	_, err := withPlugins(ctx, cfg, stderr,
		func(c *adminapi.Client) (err error) { out, err = c.Plugin(ctx, name); return err },
		func(h *pluginhost.Host) error {
			for _, s := range h.Statuses() {
				if s.Name == name {
					out.Status = s
					out.Devices, _ = h.Devices(name)
					return nil
				}
			}
			return fmt.Errorf("no plugin named %q in %s", name, strings.Join(cfg.Agent.PluginDirs, ", "))
		})
	return out, err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeTable(w io.Writer, statuses []pluginhost.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKEYS\tVERSION\tAPI\tSLOTS\tDEVICES\tSTATE\tRESTARTS\tPATH")
	for _, s := range statuses {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n",
			s.Name, dash(strings.Join(s.Keys, ",")), dash(s.Version), dash(s.APIVersion),
			dash(formatSlots(s.Slots)), s.DeviceCount, s.State, s.Restarts, s.Path)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range statuses {
		if s.Reason != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", s.Name, s.State, s.Reason)
		}
	}
	return nil
}

func writeDetail(w io.Writer, d adminapi.PluginDetail) error {
	s := d.Status
	fmt.Fprintf(w, "Name:     %s\nPath:     %s\nState:    %s\n", s.Name, s.Path, s.State)
	if s.Reason != "" {
		fmt.Fprintf(w, "Reason:   %s\n", s.Reason)
	}
	fmt.Fprintf(w, "Version:  %s (plugin API %s)\nKinds:    %s\nSlots:    %s\nRestarts: %d\n",
		dash(s.Version), dash(s.APIVersion), dash(strings.Join(s.Keys, ", ")), dash(formatSlots(s.Slots)), s.Restarts)
	fmt.Fprintf(w, "Devices:  %d\n", len(d.Devices))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(d.Devices) > 0 {
		fmt.Fprintln(tw, "  ID\tSLOT\tCAPACITY\tMODEL\tNUMA\tHEALTH\tATTRIBUTES")
	}
	for _, dev := range d.Devices {
		attrs := make([]string, 0, len(dev.Attributes))
		for k, v := range dev.Attributes {
			attrs = append(attrs, k+"="+v)
		}
		sort.Strings(attrs)
		if dev.UUID != "" {
			attrs = append([]string{"uuid=" + dev.UUID}, attrs...)
		}
		if dev.PCIBusID != "" {
			attrs = append(attrs, "pci="+dev.PCIBusID)
		}
		if dev.MemoryBytes > 0 {
			attrs = append(attrs, "memory="+formatBytes(decimal.NewFromUint64(dev.MemoryBytes)))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%s\n", dev.ID, dev.SlotName, dev.Capacity, dash(dev.Model),
			dev.NUMANode, dev.Health, strings.Join(attrs, " "))
	}
	return tw.Flush()
}

func formatSlots(slots []pluginhost.SlotInfo) string {
	parts := make([]string, 0, len(slots))
	for _, s := range slots {
		amount := s.Capacity.String()
		if s.Kind == "bytes" {
			amount = formatBytes(s.Capacity)
		}
		parts = append(parts, fmt.Sprintf("%s=%s", s.Name, amount))
	}
	return strings.Join(parts, " ")
}

// formatBytes prints a byte count in binary units, e.g. 15.5GiB.
func formatBytes(b decimal.Decimal) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	k := decimal.NewFromInt(1024)
	i := 0
	for b.GreaterThanOrEqual(k) && i < len(units)-1 {
		b = b.DivRound(k, 4)
		i++
	}
	return b.Round(1).String() + units[i]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
