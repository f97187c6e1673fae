package localcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
)

// savedSysctls are the kernel settings the cluster changes (Up and the
// kubelet); Up records their values first and Down puts them back.
var savedSysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"vm/overcommit_memory",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// run executes a command and returns its error with its output.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// setUpNetwork gives the node its fixed address and turns on forwarding.
func setUpNetwork(ctx context.Context, p paths) error {
	if err := saveSysctls(p); err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/bridge/bridge-nf-call-iptables", "1"},
		{"net/bridge/bridge-nf-call-ip6tables", "1"},
	} {
		if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
			return fmt.Errorf("set %s: %w", kv[0], err)
		}
	}
	for _, args := range [][]string{
		{"link", "add", nodeLink, "type", "bridge"},
		{"addr", "add", NodeIP + "/32", "dev", nodeLink},
		{"link", "set", nodeLink, "up"},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("node address: %w", err)
		}
	}
	return nil
}

func sysctlFile(p paths) string { return filepath.Join(p.cfg.StateDir, "sysctl.saved") }

// saveSysctls records the current values, unless an earlier run's record is
// still there (then those are the machine's own values).
func saveSysctls(p paths) error {
	if fileExists(sysctlFile(p)) {
		return nil
	}
	var b strings.Builder
	for _, k := range savedSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", k, strings.TrimSpace(string(v)))
	}
	if err := os.MkdirAll(p.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", p.cfg.StateDir, err)
	}
	if err := os.WriteFile(sysctlFile(p), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("save sysctls: %w", err)
	}
	return nil
}

// restoreSysctls puts back the values saveSysctls recorded.
func restoreSysctls(p paths) error {
	data, err := os.ReadFile(sysctlFile(p))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read saved sysctls: %w", err)
	}
	var errs []error
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), "=")
		if !ok {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// removeLinks deletes the node bridge, the CNI bridge and any veth still
// attached to it.
func removeLinks(ctx context.Context) error {
	out, _ := exec.CommandContext(ctx, "ip", "-o", "link", "show", "master", cniBridge).Output()
	var links []string
	for _, line := range strings.Split(string(out), "\n") {
		// "7: veth1234@if2: <...> ..."
		fields := strings.Fields(line)
		if len(fields) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
			links = append(links, name)
		}
	}
	links = append(links, cniBridge, nodeLink)
	var errs []error
	for _, l := range links {
		if exec.CommandContext(ctx, "ip", "link", "show", l).Run() != nil {
			continue
		}
		if err := run(ctx, "ip", "link", "del", l); err != nil {
			// A pod's veth goes by itself when its network namespace does
			// (the shims were just killed), maybe between the check above
			// and the delete: gone is what was wanted.
			if exec.CommandContext(ctx, "ip", "link", "show", l).Run() != nil {
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownedChain reports whether an iptables chain was made by the cluster:
// kube-proxy and the kubelet name theirs KUBE-*, the CNI plugins CNI-*.
func ownedChain(name string) bool {
	return strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "CNI-")
}

// filterIPTablesSave drops the cluster's chains, and every rule in them or
// jumping to them, from iptables-save output. The rest is left as it was.
func filterIPTablesSave(in []byte) (out []byte, changed bool) {
	var b bytes.Buffer
	s := bufio.NewScanner(bytes.NewReader(in))
	s.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for s.Scan() {
		line := s.Text()
		fields := strings.Fields(line)
		drop := false
		switch {
		case strings.HasPrefix(line, ":"):
			drop = ownedChain(strings.TrimPrefix(fields[0], ":"))
		case strings.HasPrefix(line, "-A ") && len(fields) > 1:
			drop = ownedChain(fields[1])
			for i := 2; i+1 < len(fields) && !drop; i++ {
				if (fields[i] == "-j" || fields[i] == "-g" || fields[i] == "--jump" || fields[i] == "--goto") && ownedChain(fields[i+1]) {
					drop = true
				}
			}
		}
		if drop {
			changed = true
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), changed
}

// removeIPTablesRules removes the cluster's chains and rules from iptables and
// ip6tables, through iptables-save and iptables-restore.
func removeIPTablesRules(ctx context.Context) error {
	var errs []error
	for _, family := range []string{"iptables", "ip6tables"} {
		save, err := exec.LookPath(family + "-save")
		if err != nil {
			continue
		}
		rules, err := exec.CommandContext(ctx, save).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", save, err))
			continue
		}
		filtered, changed := filterIPTablesSave(rules)
		if !changed {
			continue
		}
		restore := exec.CommandContext(ctx, family+"-restore")
		restore.Stdin = bytes.NewReader(filtered)
		if out, err := restore.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore: %w: %s", family, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// iptablesTables are the tables iptables-nft creates on first use.
var iptablesTables = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}

// removeNFTables deletes nftables tables kube-proxy may leave ("kube-proxy")
// and iptables-nft tables left with no rule and only accepting policies, so
// that `nft list ruleset` is as empty as before the cluster started.
func removeNFTables() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	chains, err := conn.ListChains()
	if err != nil {
		return fmt.Errorf("list nftables chains: %w", err)
	}
	deleted := 0
	for _, t := range tables {
		remove := t.Name == "kube-proxy"
		if !remove && iptablesTables[t.Name] && (t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6) {
			remove = true
			for _, c := range chains {
				if c.Table.Name != t.Name || c.Table.Family != t.Family {
					continue
				}
				if c.Policy != nil && *c.Policy != nftables.ChainPolicyAccept {
					remove = false
					break
				}
				rules, err := conn.GetRules(t, c)
				if err != nil || len(rules) > 0 {
					remove = false
					break
				}
			}
		}
		if remove {
			conn.DelTable(t)
			deleted++
		}
	}
	if deleted == 0 {
		return nil
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("delete nftables tables: %w", err)
	}
	return nil
}
