namespace Outpost.Server.Security;

/// <summary>The server's TLS state for the endpoints that need it: null authority under --insecure-http.</summary>
public sealed record ServerTls(CertificateAuthority? Authority);
