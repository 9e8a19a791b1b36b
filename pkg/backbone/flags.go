package backbone

import (
	"flag"
	"os"

	"github.com/customs-dev/customs/pkg/lifecycle"
)

// RegisterFlags adds the NATS connection flags every service shares. Each
// flag defaults to its environment variable, so containers can be configured
// either way.
func (c *ConnConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "nats-url", os.Getenv("CUSTOMS_NATS_URL"), "external NATS server or cluster URL(s), comma separated; empty starts an embedded server (env CUSTOMS_NATS_URL)")
	fs.StringVar(&c.CredsFile, "nats-creds", os.Getenv("CUSTOMS_NATS_CREDS"), "NATS credentials file (env CUSTOMS_NATS_CREDS)")
	fs.StringVar(&c.User, "nats-user", os.Getenv("CUSTOMS_NATS_USER"), "NATS user (env CUSTOMS_NATS_USER)")
	fs.StringVar(&c.Password, "nats-password", os.Getenv("CUSTOMS_NATS_PASSWORD"), "NATS password (env CUSTOMS_NATS_PASSWORD)")
	fs.StringVar(&c.Token, "nats-token", os.Getenv("CUSTOMS_NATS_TOKEN"), "NATS token (env CUSTOMS_NATS_TOKEN)")
	fs.StringVar(&c.DataDir, "nats-data-dir", lifecycle.EnvOr("CUSTOMS_NATS_DATA_DIR", "./.customs-data/nats"), "embedded NATS JetStream storage directory (env CUSTOMS_NATS_DATA_DIR)")
	fs.IntVar(&c.PublishConnections, "nats-publish-connections", lifecycle.EnvInt("CUSTOMS_NATS_PUBLISH_CONNECTIONS", 4), "connections to spread event publishes over; one connection caps concurrent publishes (env CUSTOMS_NATS_PUBLISH_CONNECTIONS)")
	fs.IntVar(&c.Port, "nats-port", lifecycle.EnvInt("CUSTOMS_NATS_PORT", 4222), "embedded NATS client port, -1 for any free port (env CUSTOMS_NATS_PORT)")
}

// RegisterFlags adds the stream flags.
func (c *StreamConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Replicas, "stream-replicas", lifecycle.EnvInt("CUSTOMS_STREAM_REPLICAS", 1), "JetStream replicas for the Customs streams: 1, or 3 on a cluster (env CUSTOMS_STREAM_REPLICAS)")
}
