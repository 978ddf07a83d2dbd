// Command vsa-vcsim runs govmomi's vCenter simulator (vcsim 0.24.2) with the
// topology and fixes the vsa-orchestrate tests rely on. See DESIGN.md,
// "The embedded lab".
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
)

type config struct {
	listen   string
	username string
	password string
	stateDir string
	extraVMs int
	apiType  string
	labHook  string
	leaseS   int
}

// simInfo is the contract written to DIR/sim.json and printed on stdout.
type simInfo struct {
	URL        string     `json:"url"`
	Host       string     `json:"host"`
	Port       int        `json:"port"`
	Thumbprint string     `json:"thumbprint"`
	Username   string     `json:"username"`
	Password   string     `json:"password"`
	ControlURL string     `json:"control_url"`
	Datacenter string     `json:"datacenter"`
	Hosts      []hostInfo `json:"hosts"`
	Portgroups []string   `json:"portgroups"`
	Template   string     `json:"template"`
	// SharedDatastore is an NFS datastore mounted on every host.
	SharedDatastore string `json:"shared_datastore"`
	// SpareHosts are reachable hosts not in the inventory (host_add.go).
	SpareHosts []spareHostInfo `json:"spare_hosts"`
}

type hostInfo struct {
	Name      string `json:"name"`
	Datastore string `json:"datastore"`
	// The host certificate's SHA-1 and SHA-256 thumbprints ("AA:BB:...").
	Thumbprint       string `json:"thumbprint"`
	ThumbprintSHA256 string `json:"thumbprint_sha256"`
}

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "loopback address for the HTTPS /sdk endpoint")
	flag.StringVar(&cfg.username, "username", "user", "login user name")
	flag.StringVar(&cfg.password, "password", "pass", "login password")
	flag.StringVar(&cfg.stateDir, "state-dir", "", "directory for sim.json and datastore directories (required)")
	flag.IntVar(&cfg.extraVMs, "extra-vms", 0, "number of unrelated powered-off VMs to add")
	flag.StringVar(&cfg.apiType, "api-type", "VirtualCenter",
		"about.apiType to report: VirtualCenter, or HostAgent to pose as an ESXi host (same inventory)")
	flag.StringVar(&cfg.labHook, "lab-hook", "",
		"lab mode: command (JSON array or whitespace-separated) that drives real VMs and probes iSCSI portals; see lab_hook.go")
	flag.IntVar(&cfg.leaseS, "nfc-lease-timeout", 300,
		"seconds an import lease lives without HttpNfcLeaseProgress (vSphere: 300)")
	flag.Parse()

	log.SetPrefix("vsa-vcsim: ")
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

func run(cfg config) error {
	if cfg.stateDir == "" {
		return fmt.Errorf("-state-dir is required")
	}
	if cfg.username == "" || cfg.password == "" {
		return fmt.Errorf("-username and -password must not be empty")
	}
	if cfg.extraVMs < 0 {
		return fmt.Errorf("-extra-vms must be >= 0")
	}
	if cfg.leaseS < 1 {
		return fmt.Errorf("-nfc-lease-timeout must be >= 1")
	}
	nfcLeaseTimeout = time.Duration(cfg.leaseS) * time.Second
	if err := checkLoopback(cfg.listen); err != nil {
		return err
	}
	dir, err := filepath.Abs(cfg.stateDir)
	if err != nil {
		return err
	}
	cfg.stateDir = dir
	if hook, err = parseHook(cfg.labHook); err != nil {
		return err
	}

	model := simulator.VPX()
	model.Autostart = false
	model.Datacenter = 1
	model.Host = 0
	model.Cluster = 0
	model.ClusterHost = 0
	model.Portgroup = 0
	model.Datastore = 0 // no shared LocalDS_0: each host gets its own local datastore
	model.Machine = 0
	if err := model.Create(); err != nil {
		return err
	}
	installOverrides()

	ctx := context.Background()
	// In-process client: Service implements soap.RoundTripper.
	client, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return err
	}
	topo, err := buildTopology(ctx, client, cfg)
	if err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	si := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance)
	si.Content.About.ApiType = cfg.apiType
	apiType = cfg.apiType

	cert, thumbprint, err := selfSignedCert()
	if err != nil {
		return err
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.Listen = &url.URL{Host: cfg.listen, User: url.UserPassword(cfg.username, cfg.password)}

	calls := newCallCounter()
	srv := model.Service.NewServer()
	// NewServer starts serving at once and offers no middleware hook. Nobody
	// knows the port until sim.json is written, so swapping the handler here
	// cannot race with a request.
	srv.Config.Handler = calls.wrap(nfcWrap(proxyWrap(srv.Config.Handler)))
	defer srv.Close()

	ctl, err := startControl("127.0.0.1:0", calls)
	if err != nil {
		return err
	}
	defer ctl.Close()
	registerPortalRoutes(ctl)

	addr := srv.Listener.Addr().(*net.TCPAddr)
	info := simInfo{
		URL:        fmt.Sprintf("https://127.0.0.1:%d/sdk", addr.Port),
		Host:       "127.0.0.1",
		Port:       addr.Port,
		Thumbprint: thumbprint,
		Username:   cfg.username,
		Password:   cfg.password,
		ControlURL: ctl.URL,
		Datacenter: topo.datacenter,
		Hosts:      topo.hosts,
		Portgroups: topo.portgroups,
		Template:   topo.template,

		SharedDatastore: topo.shared,
		SpareHosts:      topo.spare,
	}
	if err := writeInfo(cfg.stateDir, info); err != nil {
		return err
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", hostport, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: only loopback IP addresses are allowed", hostport)
	}
	return nil
}

func writeInfo(dir string, info simInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".sim.json.tmp")
	if err := ioutil.WriteFile(tmp, append(b, '\n'), 0600); err != nil {
		return err
	}
	// Rename so readers never see a half-written file.
	if err := os.Rename(tmp, filepath.Join(dir, "sim.json")); err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
