"""WhatsApp providers behind one interface (base.SessionProvider). Only whatsapp/providers/neonize.py imports
neonize, and only inside the process that hosts sessions."""
