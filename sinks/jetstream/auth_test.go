package jetstream_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

func write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sendOne builds a sink with conn settings, sends one event, and returns
// the error and everything the sink logged at debug level.
func sendOne(t *testing.T, url string, conn func(*config.NATSConnection)) (error, string) {
	t.Helper()
	cfg := sinkConfig(url)
	conn(&cfg.NATSConnection)
	var logs bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zap.DebugLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := jetstream.New(ctx, jetstream.Options{Config: cfg, Cluster: "test", Logger: zap.New(core)})
	if err != nil {
		return err, logs.String()
	}
	defer s.Close(context.Background())
	err = s.Send(ctx, []*event.Event{sinktest.Event(1, 1)})
	return err, logs.String()
}

func TestUserPassword(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{Configure: func(o *server.Options) { o.Username, o.Password = "feed", "pa55-secret" }})
	pw := write(t, "pw", []byte("pa55-secret\n"))
	err, logs := sendOne(t, srv.URL(), func(c *config.NATSConnection) { c.User, c.PasswordFile = "feed", pw })
	if err != nil {
		t.Fatalf("with the password: %v", err)
	}
	bad := write(t, "bad", []byte("wrong-secret"))
	err2, logs2 := sendOne(t, srv.URL(), func(c *config.NATSConnection) { c.User, c.PasswordFile = "feed", bad })
	if err2 == nil {
		t.Error("a wrong password was accepted")
	}
	if bytes.Contains([]byte(logs+logs2+errString(err2)), []byte("secret")) {
		t.Errorf("a password shows in logs or errors:\n%s\n%s\n%v", logs, logs2, err2)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNKey(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	srv := natstest.StartT(t, natstest.Options{Configure: func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} }})
	if err, _ := sendOne(t, srv.URL(), func(c *config.NATSConnection) { c.NKeySeedFile = write(t, "user.nk", seed) }); err != nil {
		t.Fatalf("with the NKey: %v", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	if err, _ := sendOne(t, srv.URL(), func(c *config.NATSConnection) { c.NKeySeedFile = write(t, "other.nk", otherSeed) }); err == nil {
		t.Error("an unknown NKey was accepted")
	}
}

func TestCredentialsFile(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	newAccount := func(js bool) (nkeys.KeyPair, string, string) {
		akp, _ := nkeys.CreateAccount()
		apub, _ := akp.PublicKey()
		ac := jwt.NewAccountClaims(apub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		if err != nil {
			t.Fatal(err)
		}
		return akp, apub, ajwt
	}
	akp, apub, ajwt := newAccount(true)
	_, syspub, sysjwt := newAccount(false)
	oc.SystemAccount = syspub
	resolver := &server.MemAccResolver{}
	_ = resolver.Store(apub, ajwt)
	_ = resolver.Store(syspub, sysjwt)
	srv := natstest.StartT(t, natstest.Options{Configure: func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.AccountResolver = resolver
		o.SystemAccount = syspub
	}})
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	useed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	err, logs := sendOne(t, srv.URL(), func(c *config.NATSConnection) { c.CredentialsFile = write(t, "user.creds", creds) })
	if err != nil {
		t.Fatalf("with the credentials file: %v", err)
	}
	if bytes.Contains([]byte(logs), useed) {
		t.Error("the user seed shows in logs")
	}
	if err, _ := sendOne(t, srv.URL(), func(*config.NATSConnection) {}); err == nil {
		t.Error("no credentials: accepted")
	}
}

// certs makes a CA and a certificate it signs for server or client use.
type certs struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	serial int64
}

func newCA(t *testing.T) *certs {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubefeed test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	c := &certs{dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	c.caFile = c.write(t, "ca.pem", "CERTIFICATE", der)
	return c
}

func (c *certs) write(t *testing.T, name, typ string, der []byte) string {
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *certs) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(c.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return c.write(t, name+".pem", "CERTIFICATE", der), c.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

func TestMutualTLS(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca.ca)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.StartT(t, natstest.Options{Configure: func(o *server.Options) {
		o.TLS, o.TLSVerify = true, true
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	}})
	url := "tls://127.0.0.1:" + itoa(srv.Port())
	if err, _ := sendOne(t, url, func(c *config.NATSConnection) {
		c.TLS = &config.TLS{CAFile: ca.caFile, CertFile: cliCert, KeyFile: cliKey}
	}); err != nil {
		t.Fatalf("with client certificate: %v", err)
	}
	if err, _ := sendOne(t, url, func(c *config.NATSConnection) { c.TLS = &config.TLS{CAFile: ca.caFile} }); err == nil {
		t.Error("without a client certificate: accepted")
	}
}
