/**
 * The one place @peculiar/x509 is loaded: it needs reflect-metadata first, and costs
 * about 100 ms to import, so commands that do not sign never pay for it.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export { x509 };
