/** The release both binaries report (`svcca --version`, `svcca-sidecar --version`). */
export const VERSION = '0.1.0';
