package cpu

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/baiagent/baiagent/proto/sdk"
)

// TestParseNetDev pins upstream's _parse_proc_net_dev (containers, lo
// skipped) and psutil.net_io_counters (node, lo counted), both in
// agent/docker/intrinsic.py (26.8.1).
func TestParseNetDev(t *testing.T) {
	const header = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
	tests := []struct {
		description  string
		data         string
		withLoopback bool
		want         NetDev
		wantErr      bool
	}{
		{"container: loopback skipped, interfaces summed",
			header + "    lo: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n  eth1: 1 1 0 0 0 0 0 0 2 2 0 0 0 0 0 0\n",
			false, NetDev{RxBytes: 101, TxBytes: 202}, false},
		{"node: loopback counted",
			header + "    lo: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n",
			true, NetDev{RxBytes: 110, TxBytes: 220}, false},
		{"no space after the colon (large counters)",
			header + "eth0:4294967296 1 0 0 0 0 0 0 8589934592 2 0 0 0 0 0 0\n",
			false, NetDev{RxBytes: 1 << 32, TxBytes: 1 << 33}, false},
		{"only loopback in a fresh namespace", header + "    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n", false, NetDev{}, false},
		{"truncated line", header + "  eth0: 100 1 0\n", false, NetDev{}, true},
		{"not a number", header + "  eth0: x 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n", false, NetDev{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseNetDev([]byte(tc.data), tc.withLoopback)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseNetDev = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestDiskMounts pins the partition filter behind upstream's node disk
// metric (agent/docker/intrinsic.py get_disk_stat over
// psutil.disk_partitions(all=False), 26.8.1).
func TestDiskMounts(t *testing.T) {
	filesystems := "nodev\tsysfs\nnodev\ttmpfs\nnodev\toverlay\nnodev\tzfs\n\text4\n\tvfat\n\txfs\n\tsquashfs\n\tbtrfs\n"
	tests := []struct {
		description string
		mount       string
		keep        bool
	}{
		{"ext4 root", "/dev/sda2 / ext4 rw 0 0", true},
		{"xfs with an escaped space", `/dev/sdb1 /data\040disk xfs rw 0 0`, true},
		{"zfs, the one nodev type psutil keeps", "tank/home /home zfs rw 0 0", true},
		{"a virtual filesystem (nodev)", "sysfs /sys sysfs rw 0 0", false},
		{"overlay is nodev", "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0", false},
		{"tmpfs is nodev and pruned", "tmpfs /run tmpfs rw 0 0", false},
		{"vfat pruned by upstream", "/dev/sda1 /boot/efi vfat rw 0 0", false},
		{"squashfs pruned by upstream", "/dev/loop0 /snap/x/1 squashfs ro 0 0", false},
		{"device none", "none /mnt ext4 rw 0 0", false},
		{"docker's runc runtime mounts", "/dev/sda2 /proc/docker/runtime-runc/moby/abc ext4 rw 0 0", false},
		{"docker's btrfs subvolumes", "/dev/sdc /var/lib/docker/btrfs btrfs rw 0 0", false},
		{"an unknown filesystem type", "/dev/sdd /x fuse.sshfs rw 0 0", false},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got := DiskMounts([]byte(filesystems), []byte(tc.mount+"\n"))
			if (len(got) == 1) != tc.keep {
				t.Fatalf("DiskMounts(%q) = %+v, keep %v", tc.mount, got, tc.keep)
			}
		})
	}
	if got := DiskMounts([]byte(filesystems), []byte(`/dev/sdb1 /data\040disk xfs rw 0 0`)); got[0].MountPoint != "/data disk" {
		t.Errorf("mount point %q, want the unescaped %q", got[0].MountPoint, "/data disk")
	}
}

// TestNodeDiskAndNet checks node disk, net_rx and net_tx on the v2host
// fixture (proc/filesystems, proc/self/mounts, proc/net/dev) with statfs
// faked: upstream's gather_node_measures of the memory plugin
// (agent/docker/intrinsic.py, 26.8.1).
func TestNodeDiskAndNet(t *testing.T) {
	p := newFixturePlugin(t, fixture(t, "v2host"), nil)
	var statted []string
	inner := p.newReader
	p.newReader = func(c config) hostReader {
		h := inner(c)
		h.statfs = func(mp string) (uint64, uint64, error) {
			statted = append(statted, mp)
			switch mp {
			case "/":
				return 300, 1000, nil
			case "/data disk":
				return 50, 500, nil
			}
			return 0, 0, errors.New("no such mount")
		}
		return h
	}
	ms, err := p.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	disk := metricByKey(t, ms, "disk")
	tests := []struct {
		description string
		got         sdk.Measurement
		value, cap  string
	}{
		{"disk per node sums devices; /home (zfs) failed statfs and is left out", *disk.PerNode, "350", "1500"},
		{"root device", disk.PerDevice["/dev/nvme0n1p2"], "300", "1000"},
		{"device with a space in its mount point", disk.PerDevice["/dev/nvme1n1"], "50", "500"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if !tc.got.Value.Equal(dec(tc.value)) || tc.got.Capacity == nil || !tc.got.Capacity.Equal(dec(tc.cap)) {
				t.Fatalf("%+v, want %s of %s", tc.got, tc.value, tc.cap)
			}
		})
	}
	if len(disk.PerDevice) != 2 || disk.UnitHint != "bytes" {
		t.Errorf("disk devices %v unit %q", disk.PerDevice, disk.UnitHint)
	}
	// /var/lib/docker is a second mount of the root device: measured once.
	if !slices.Equal(statted, []string{"/", "/data disk", "/home"}) {
		t.Errorf("statfs on %v", statted)
	}
	rx, tx := metricByKey(t, ms, "net_rx"), metricByKey(t, ms, "net_tx")
	if !rx.PerNode.Value.Equal(dec("5301000")) || !tx.PerNode.Value.Equal(dec("2401000")) ||
		!rx.PerDevice["node"].Value.Equal(dec("5301000")) || rx.UnitHint != "bps" || rx.PerNode.Capacity != nil {
		t.Errorf("node net_rx %+v net_tx %+v, want 5301000 and 2401000 bytes (lo counted)", rx, tx)
	}
}

// TestContainerNetAndScratch checks the per-container net_rx, net_tx (lo
// skipped) and io_scratch_size (always 0) of upstream's
// gather_container_measures (agent/docker/intrinsic.py, 26.8.1).
func TestContainerNetAndScratch(t *testing.T) {
	p := newFixturePlugin(t, fixture(t, "v2host"), nil)
	ms, err := p.ContainerMetrics(context.Background(), []sdk.ContainerRef{
		{ContainerID: "4f1c9a", PID: 4001, CgroupPath: "/system.slice/docker-4f1c9a.scope"},
		{ContainerID: "77aa01", PID: 4999, CgroupPath: "/system.slice/docker-77aa01.scope"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rx, tx, scratch := metricByKey(t, ms, "net_rx"), metricByKey(t, ms, "net_tx"), metricByKey(t, ms, "io_scratch_size")
	tests := []struct {
		description string
		metric      sdk.Metric
		id          string
		want        string // "" for absent
	}{
		{"net_rx of the container's namespace without lo", rx, "4f1c9a", "123456"},
		{"net_tx of the container's namespace without lo", tx, "4f1c9a", "65432"},
		{"no net/dev for the pid: no net_rx rather than a false 0", rx, "77aa01", ""},
		{"io_scratch_size is 0", scratch, "4f1c9a", "0"},
		{"io_scratch_size also without network", scratch, "77aa01", "0"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			m, ok := tc.metric.PerContainer[tc.id]
			if ok != (tc.want != "") || (ok && !m.Value.Equal(dec(tc.want))) {
				t.Fatalf("%s[%s] = %+v (present %v), want %q", tc.metric.Key, tc.id, m, ok, tc.want)
			}
		})
	}
	if rx.UnitHint != "bps" || scratch.UnitHint != "bytes" {
		t.Errorf("units %q %q", rx.UnitHint, scratch.UnitHint)
	}
}
