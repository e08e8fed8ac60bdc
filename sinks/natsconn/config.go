package natsconn

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/kubefeed/kubefeed/sinks"
)

// Config is how a sink or the JetStream checkpoint connects to NATS: the
// keys its block shares with them (servers, name, the credentials, tls).
// Secrets are read from files (mounted Secrets), never written inline.
type Config struct {
	Servers []string `yaml:"servers"`
	// Name of the connection as the server shows it (default kubefeed).
	Name            string     `yaml:"name"`
	User            string     `yaml:"user"`
	PasswordFile    string     `yaml:"passwordFile"`
	TokenFile       string     `yaml:"tokenFile"`
	NKeySeedFile    string     `yaml:"nkeySeedFile"`
	CredentialsFile string     `yaml:"credentialsFile"`
	TLS             *sinks.TLS `yaml:"tls"`
}

// Validate checks the connection keys, at paths relative to the block
// that holds them.
func (c *Config) Validate() []sinks.Problem {
	var ps sinks.Problems
	if len(c.Servers) == 0 {
		ps.AtKey("", "servers is required (for example [nats://127.0.0.1:4222])")
	}
	for i, s := range c.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") {
			ps.At(fmt.Sprintf("servers[%d]", i), "must be a URL such as nats://host:4222 or tls://host:4222")
		}
	}
	auth := 0
	for _, set := range []bool{c.User != "" || c.PasswordFile != "", c.TokenFile != "", c.NKeySeedFile != "", c.CredentialsFile != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		ps.AtKey("", "use one of user/passwordFile, tokenFile, nkeySeedFile, credentialsFile")
	}
	ps.Nest("tls", c.TLS.Validate())
	return ps
}

// DefaultSubject is the subject template of the NATS sinks.
const DefaultSubject = "kubefeed.{cluster}.{group}.{resource}.{namespace}.{change}"

// subjectTokens are the placeholders a subject template may use.
var subjectTokens = []string{"{cluster}", "{group}", "{version}", "{resource}", "{namespace}", "{name}", "{kind}", "{change}"}

// CheckSubjectTemplate rejects templates with unknown placeholders, empty
// tokens or wildcards.
func CheckSubjectTemplate(tmpl string) error {
	for _, tok := range strings.Split(tmpl, ".") {
		if tok == "" {
			return fmt.Errorf("subject %q has an empty token", tmpl)
		}
		rest := tok
		for _, ph := range subjectTokens {
			rest = strings.ReplaceAll(rest, ph, "")
		}
		if strings.ContainsAny(rest, "{}") {
			return fmt.Errorf("subject %q: unknown placeholder in %q (use %s)", tmpl, tok, strings.Join(subjectTokens, " "))
		}
		if strings.ContainsAny(rest, "*> \t") {
			return fmt.Errorf("subject %q: wildcards and spaces are not allowed", tmpl)
		}
	}
	return nil
}

// CheckLiteralSubject accepts a NATS subject without wildcards or
// placeholders.
func CheckLiteralSubject(s string) error {
	for _, tok := range strings.Split(s, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("subject %q has an empty token", s)
		case strings.ContainsAny(tok, "*> \t\r\n"):
			return fmt.Errorf("subject %q: wildcards and spaces are not allowed", s)
		case strings.ContainsAny(tok, "{}"):
			return fmt.Errorf("subject %q: placeholders are not allowed here (a fixed subject)", s)
		}
	}
	return nil
}
