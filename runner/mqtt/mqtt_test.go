package mqtt

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eventfn/eventfn/internal/coalesce"
)

func TestBrokerURL(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"mqtt://broker", "tcp://broker:1883", ""},
		{"mqtt://127.0.0.1:1884", "tcp://127.0.0.1:1884", ""},
		{"mqtts://broker", "ssl://broker:8883", ""},
		{"mqtt+ws://broker:15675/ws", "ws://broker:15675/ws", ""},
		{"mqtt+ws://broker", "ws://broker:80/ws", ""},
		{"mqtt+wss://waldur.example.org/rmqws", "wss://waldur.example.org:443/rmqws", ""},
		{"mqtt://[::1]:1883", "tcp://[::1]:1883", ""},
		{"mqtt://user:secret@broker", "", "credentials"},
		{"mqtt://broker?vhost=x", "", "no query"},
		{"mqtt://broker/path", "", "path is only meaningful"},
		{"stomp://broker", "", "want mqtt"},
		{"mqtt://", "", "missing host"},
	} {
		got, err := BrokerURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err = %v, want one containing %q", c.in, err, c.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: error shows the password: %v", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestLoginFor(t *testing.T) {
	for _, c := range []struct{ vhost, login, user, eff string }{
		{"", "", "", ""},
		{"", "guest", "guest", ""},
		{"/", "guest", "/:guest", "/"},
		{"0123abcd", "sub", "0123abcd:sub", "0123abcd"},
		{"ignored", "v1:sub", "v1:sub", "v1"}, // already in vhost:user form
		{"v", "", "", "v"},
	} {
		user, eff := Login(c.vhost, c.login)
		if user != c.user || eff != c.eff {
			t.Errorf("Login(%q, %q) = %q, %q; want %q, %q", c.vhost, c.login, user, eff, c.user, c.eff)
		}
	}
}

func TestTypeFromTopic(t *testing.T) {
	topic := "subscription/aa/offering/bb/user_role"
	for n, want := range map[int]string{0: "user_role", -1: "user_role", 1: "subscription", 5: "user_role",
		4: "bb", -2: "bb", 6: "", -6: ""} {
		if got := typeFromTopic(topic, n); got != want {
			t.Errorf("segment %d = %q, want %q", n, got, want)
		}
	}
	if got := typeFromTopic("order", 0); got != "order" {
		t.Errorf("single level = %q", got)
	}
}

func TestCheckFilter(t *testing.T) {
	for _, ok := range []string{"a/b", "subscription/+/offering/+/+", "#", "a/#", "+"} {
		if err := checkFilter(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a/b#", "a+/b"} {
		if err := checkFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDefaultClientID(t *testing.T) {
	if got := DefaultClientID("waldur mqtt", "node1.example.org"); got != "eventfn-waldur_mqtt-node1.example.org" {
		t.Errorf("got %q", got)
	}
}

func TestNewRejects(t *testing.T) {
	base := Config{Name: "t", URL: "mqtt://h", Subscribe: []string{"a/#"}, ClientID: "c"}
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no subscription": {func(c *Config) { c.Subscribe = nil }, "subscribe"},
		"bad filter":      {func(c *Config) { c.Subscribe = []string{"a/#/b"} }, "last level"},
		"qos 3":           {func(c *Config) { c.QoS = 3 }, "qos"},
		"dead letter":     {func(c *Config) { c.DeadLetterOnFailure = true }, "dead_letter"},
		"wild dead letter": {func(c *Config) { c.DeadLetterOnFailure, c.DeadLetter = true, "dlq/#" },
			"cannot hold"},
		"message id": {func(c *Config) { c.MessageID = "payload" }, "message_id"},
		"passcode":   {func(c *Config) { c.Passcode = "p" }, "without a login"},
	} {
		cfg := base
		c.mod(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, c.want)
		}
	}
}

// spec is a source as the tests write it: its url and settings.
type tspec struct {
	URL string
	Settings
}

func fromSpec(s tspec, d Deps) (*Source, error) { return FromSettings("w", s.URL, s.Settings, d) }

func TestFromSettings(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := tspec{URL: "mqtt+ws://127.0.0.1:15675/ws", Settings: Settings{VHost: "vh", Login: "sub",
		PasscodeFile: pass, Subscribe: []string{"subscription/+/offering/+/+"}}}
	s, err := fromSpec(spec, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Passcode != "s3cret" || s.user != "vh:sub" || s.vhost != "vh" || s.broker != "ws://127.0.0.1:15675/ws" {
		t.Errorf("passcode %q user %q vhost %q broker %q", s.cfg.Passcode, s.user, s.vhost, s.broker)
	}
	host, _ := os.Hostname()
	if s.ClientID() != DefaultClientID("w", host) || s.cfg.QoS != 1 || s.cfg.MessageID != MessageIDHash {
		t.Errorf("client id %q qos %d message id %q", s.ClientID(), s.cfg.QoS, s.cfg.MessageID)
	}

	rel := spec
	rel.PasscodeFile = "pass"
	if s, err = fromSpec(rel, Deps{Dir: dir}); err != nil || s.cfg.Passcode != "s3cret" {
		t.Errorf("passcode_file relative to the rules file: %v", err)
	}

	t.Setenv("EVENTFN_TEST_MQTT_PASS", "from-env")
	spec.PasscodeFile, spec.PasscodeEnv = "", "EVENTFN_TEST_MQTT_PASS"
	if s, err = fromSpec(spec, Deps{}); err != nil || s.cfg.Passcode != "from-env" {
		t.Errorf("env passcode: %v", err)
	}

	for name, c := range map[string]struct {
		mod  func(*tspec)
		want string
	}{
		"no passcode":     {func(s *tspec) { s.PasscodeEnv = "" }, "passcode_file or passcode_env"},
		"unset env":       {func(s *tspec) { s.PasscodeEnv = "EVENTFN_TEST_MQTT_UNSET" }, "not set"},
		"missing file":    {func(s *tspec) { s.PasscodeEnv, s.PasscodeFile = "", filepath.Join(dir, "none") }, "no such file"},
		"tls on plain ws": {func(s *tspec) { s.TLS.ServerName = "x" }, "mqtts:// or mqtt+wss://"},
		"bad ca":          {func(s *tspec) { s.URL = "mqtts://h"; s.TLS.CAFile = pass }, "no PEM"},
		"cert no key":     {func(s *tspec) { s.URL = "mqtts://h"; s.TLS.CertFile = pass }, "go together"},
		"qos":             {func(s *tspec) { s.QoS = 3 }, "qos"},
		"dead-letter":     {func(s *tspec) { s.OnFailure = "dead-letter" }, "needs dead_letter"},
	} {
		sp := spec
		c.mod(&sp)
		_, err := fromSpec(sp, Deps{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, c.want)
		}
	}
}

// TestOpenConnectionCoalesces: the connections the source gives paho
// coalesce their writes (the PUBACKs of a window leave in one system call;
// TestPersistentSession shows the broker gets each of them), and a scheme
// BrokerURL does not make is refused.
func TestOpenConnectionCoalesces(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := paho.NewClientOptions()
	c, err := openConnection(&url.URL{Scheme: "tcp", Host: l.Addr().String()}, *o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*coalesce.Conn); !ok {
		t.Errorf("connection is a %T, want a *coalesce.Conn", c)
	}
	// TLS: the handshake is made (and verified) before paho gets the
	// connection.
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	ts.StartTLS()
	defer ts.Close()
	o.SetTLSConfig(ts.Client().Transport.(*http.Transport).TLSClientConfig)
	tc, err := openConnection(&url.URL{Scheme: "ssl", Host: ts.Listener.Addr().String()}, *o)
	if err != nil {
		t.Fatalf("ssl: %v", err)
	}
	defer tc.Close()
	if _, ok := tc.(*coalesce.Conn); !ok {
		t.Errorf("ssl connection is a %T, want a *coalesce.Conn", tc)
	}
	o.SetTLSConfig(&tls.Config{}) // the test server's certificate is not trusted
	if _, err := openConnection(&url.URL{Scheme: "ssl", Host: ts.Listener.Addr().String()}, *o); err == nil {
		t.Error("ssl: an untrusted certificate was accepted")
	}
	if _, err := openConnection(&url.URL{Scheme: "unix", Path: "/tmp/x"}, *o); err == nil {
		t.Error("a unix socket scheme was dialled")
	}
}
