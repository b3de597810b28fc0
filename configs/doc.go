// Package configs is the appliance's configuration: a versioned TOML schema,
// decoded strictly and validated once, before anything touches the network.
//
// [Parse] works in three passes over the same bytes:
//
//  1. BurntSushi/toml parses the text into a generic tree; a syntax error
//     stops here and is reported with the parser's line.
//  2. A small line indexer (lines.go) scans the text again and maps every
//     dotted key path, with array-of-tables indices ("isp[1].next_hop"), to
//     the line it is written on. The TOML library keeps no public positions,
//     and none at all per array element.
//  3. A strict decoder walks the tree against the Go structs (the `toml`
//     struct tags are the schema): every unknown key and every wrong type is
//     an error. Defaults are the values [Default] returns; a key absent from
//     the file keeps its default. Validation then checks every value and the
//     cross references (subscriber → isp, subscriber → access, uniqueness)
//     and fills the resolved fields (tagged `toml:"-"`).
//
// Every problem found is collected, not only the first: the error returned
// is an [Errors], one [*Error] per problem, each printed as
// "FILE:LINE: KEY: message" where KEY is the dotted path. A required key
// that is absent is reported at the line of the table that should hold it.
//
// A *Config returned without error is a pure value: nothing here opens an
// interface or a socket. The environment-dependent objects (ports, stores,
// listeners) are built from it by their own packages.
package configs
