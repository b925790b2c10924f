/** How the sidecar reaches `svcca serve`: trusting its own ca.crt, expecting spiffe://<td>/svcca. */
import { CA_SERVER_SERVICE, type CaTls } from '../../common/ca-client.js';
import { spiffeIdFor } from '../../common/spiffe-id.js';
import type { Identity } from '../snapshot.js';

export function caTlsFor(identity: Identity): CaTls {
  return { caPem: identity.caPem, serverId: spiffeIdFor(identity.id.trustDomain, CA_SERVER_SERVICE) };
}
