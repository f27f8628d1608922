/* placeholder: protocol */
